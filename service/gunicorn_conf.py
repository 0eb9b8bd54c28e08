"""gunicorn settings for the API: `gunicorn -c python:service.gunicorn_conf 'service:create_app()'`.

Gunicorn reads this file itself; it is configuration, not application code, so it may read
the process environment that gunicorn was started with.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Sync workers, one more than cores: a request spends part of its time waiting on Redis, and
# the extra process uses that wait (2 cores: 3 workers, +8% intake vs 2 in one wrk run, within
# noise; gthread workers measured no better). docs/benchmarks.md has the figures.
workers = int(os.environ.get("WEB_CONCURRENCY", str((os.cpu_count() or 1) + 1)))
accesslog = "-"
# No client address and no headers: access logs must never hold a full IP or a token.
access_log_format = '%(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'
# gunicorn's own loggers write JSON lines through the same redaction as the app's: a path
# may hold an address ("/api/v1/comments/jane%40example.com" is logged decoded) and the error
# log names the client IP of a malformed request.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "workers.privacy.RedactingFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "json",
            "filters": ["redact"],
        }
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": []},
}
graceful_timeout = 20
timeout = 30
