#!/bin/sh
# Container roles: api | worker | beat | train | <any command>
set -e
role="${1:-api}"
[ "$#" -gt 0 ] && shift
case "$role" in
  api)    exec gunicorn --workers "${WEB_CONCURRENCY:-2}" --bind "0.0.0.0:${PORT:-8000}" \
            --access-logfile - "service:create_app()" "$@" ;;
  worker) exec python -m workers worker --concurrency "${WORKER_CONCURRENCY:-2}" "$@" ;;
  beat)   exec python -m workers beat "$@" ;;
  train)  exec moderation-model "$@" ;;
  *)      exec "$role" "$@" ;;
esac
