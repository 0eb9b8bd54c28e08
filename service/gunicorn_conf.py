"""gunicorn settings for the API: `gunicorn -c python:service.gunicorn_conf 'service:create_app()'`.

Gunicorn reads this file itself; it is configuration, not application code, so it may read
the process environment that gunicorn was started with.
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
accesslog = "-"
# No client address and no headers: access logs must never hold a full IP or a token.
access_log_format = '%(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'
graceful_timeout = 20
timeout = 30
