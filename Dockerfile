# One image; the role is chosen by the command: api (default), worker, beat, train.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MODERATION_ENV=production \
    MODERATION_MODEL_DIR=/var/lib/moderation/models

RUN groupadd --system app && useradd --system --gid app --home /app app
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY workers ./workers
COPY model ./model
COPY scripts/docker-entrypoint.sh /usr/local/bin/moderation-entrypoint
RUN pip install . \
    && mkdir -p /var/lib/moderation/models \
    && chown -R app:app /var/lib/moderation \
    && chmod 0755 /usr/local/bin/moderation-entrypoint

USER app
EXPOSE 8000
VOLUME ["/var/lib/moderation"]
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)" || exit 1
ENTRYPOINT ["moderation-entrypoint"]
CMD ["api"]
