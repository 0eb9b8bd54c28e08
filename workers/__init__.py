"""Celery workers: the scoring pipeline, the Redis store and shared configuration."""
