#!/bin/sh
# Container roles: api | worker | beat | train | <any command>
set -e
role="${1:-api}"
[ "$#" -gt 0 ] && shift
case "$role" in
  api)    export HOST="${HOST:-0.0.0.0}"
          # Several gunicorn processes share their metrics through files: an empty directory
          # at every start (stale files of dead processes would add up otherwise).
          if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
            mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
            find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
          fi
          exec gunicorn -c python:service.gunicorn_conf "service:create_app()" "$@" ;;
  worker) exec python -m workers worker "$@" ;;  # solo pool: one container per core
  beat)   exec python -m workers beat "$@" ;;
  train)  exec moderation-model "$@" ;;
  *)      exec "$role" "$@" ;;
esac
