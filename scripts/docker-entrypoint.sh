#!/bin/sh
# Container roles: api | worker | beat | train | <any command>
set -e
role="${1:-api}"
[ "$#" -gt 0 ] && shift
case "$role" in
  api)    export HOST="${HOST:-0.0.0.0}"
          exec gunicorn -c python:service.gunicorn_conf "service:create_app()" "$@" ;;
  worker) exec python -m workers worker "$@" ;;  # solo pool: one container per core
  beat)   exec python -m workers beat "$@" ;;
  train)  exec moderation-model "$@" ;;
  *)      exec "$role" "$@" ;;
esac
