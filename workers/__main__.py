"""Run a worker, the beat scheduler or a one-off sweep: ``python -m workers worker``."""

from __future__ import annotations

import logging
import sys

import click
import redis
from celery.signals import worker_init

from workers.celery_app import SCORING_QUEUE, WEBHOOK_QUEUE, create_celery
from workers.logs import configure_logging
from workers.runtime import redis_failure
from workers.settings import ConfigError, Settings
from workers.tasks import runtime_for


def _settings() -> Settings:
    try:
        return Settings.from_env().check()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """Moderation workers."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--concurrency", "-c", default=1, show_default=True, help="Pool processes (prefork pool)."
)
@click.option(
    "--pool",
    default="solo",
    show_default=True,
    # Scoring is batched: a solo process runs each batch itself and decided about twice as many
    # comments as prefork, which pays a parent-to-child hand-off per batch (docs/benchmarks.md,
    # "Sustained decisions"). One per 2-core host; add processes for more cores.
    help="Celery pool; the default runs batches in this process.",
)
@click.option("--beat/--no-beat", default=False, help="Also run the periodic sweep in-process.")
@click.option(
    "--queues",
    "-Q",
    # Never webhooks by default: a solo process delivering to a slow or hung site would score
    # nothing meanwhile. `python -m workers webhooks` delivers them.
    default=SCORING_QUEUE,
    show_default=True,
    help="Queues to consume (webhooks have their own worker: `python -m workers webhooks`).",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    concurrency: int, pool: str, beat: bool, queues: str, celery_args: tuple[str, ...]
) -> None:
    """Start a Celery worker that scores comments."""
    settings = _settings()
    configure_logging(settings.log_level)
    app = create_celery(settings)

    def preload(**_: object) -> None:
        # Load the model in the main process before the pool forks: children share its pages
        # copy-on-write, and the worker only answers pings once the model is ready.
        runtime_for(app).classifier()

    worker_init.connect(preload, weak=False)
    if settings.webhook_url and WEBHOOK_QUEUE not in queues.split(","):
        logging.getLogger(__name__).info(
            "this worker does not deliver webhooks; run `python -m workers webhooks` for that"
        )
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        f"--queues={queues}",
        # Celery's own loggers follow the configured level too (INFO logs two lines per task).
        f"--loglevel={settings.log_level}",
    ]
    if beat:
        argv += ["--beat", f"--schedule={settings.model_dir.parent / 'celerybeat-schedule'}"]
    if settings.worker_metrics_port:
        _serve_metrics(settings, pool)
    app.worker_main(argv=[*argv, *celery_args])


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--concurrency",
    "-c",
    default=8,
    show_default=True,
    help="Deliveries in flight at once (threads: a hung site holds one of them).",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def webhooks(concurrency: int, celery_args: tuple[str, ...]) -> None:
    """Start a Celery worker that delivers webhook events (no model is loaded)."""
    settings = _settings()
    configure_logging(settings.log_level)
    app = create_celery(settings)
    # Build the Redis client before the threads start (they would race to create it).
    worker_init.connect(lambda **_: runtime_for(app).store, weak=False)
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--queues={WEBHOOK_QUEUE}",
        # One message per thread in hand: a killed worker strands few events (retries waiting
        # for their time are held in memory whatever the prefetch).
        "--prefetch-multiplier=1",
        f"--loglevel={settings.log_level}",
    ]
    if settings.worker_metrics_port:
        _serve_metrics(settings, "threads")
    app.worker_main(argv=[*argv, *celery_args])


def _serve_metrics(settings: Settings, pool: str) -> None:
    from workers.metrics import serve_worker_metrics

    if pool not in ("solo", "threads") and not settings.prometheus_multiproc_dir:
        # Pool children count in their own memory; only shared files reach the parent's server.
        raise click.ClickException(
            "MODERATION_WORKER_METRICS_PORT with the prefork pool needs PROMETHEUS_MULTIPROC_DIR"
        )
    try:
        serve_worker_metrics(
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            settings.prometheus_multiproc_dir,
        )
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot serve worker metrics: {exc}") from None


@main.command()
def beat() -> None:
    """Start the beat scheduler (runs the unscored-comment sweep periodically)."""
    settings = _settings()
    configure_logging(settings.log_level)
    app = create_celery(settings)
    # The schedule file goes beside the models: the working directory may not be writable
    # (the container's /app is not).
    schedule = settings.model_dir.parent / "celerybeat-schedule"
    app.start(argv=["beat", "--loglevel=INFO", f"--schedule={schedule}"])


@main.command()
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait for replies.")
@click.option(
    "--node",
    default=None,
    help="Worker node name to ask (default: celery@<this host>, the worker in this container).",
)
def ping(timeout: float, node: str | None) -> None:
    """Exit 0 if the worker answers a ping through the broker (container health checks)."""
    import socket

    settings = _settings()
    app = create_celery(settings)
    destination = node or f"celery@{socket.gethostname()}"
    try:
        replies = app.control.ping(destination=[destination], timeout=timeout)
    except Exception as exc:  # any broker failure means "not healthy"
        raise click.ClickException(f"no answer from {destination}: {type(exc).__name__}") from None
    if not replies:
        raise click.ClickException(f"no answer from {destination} within {timeout}s")
    click.echo(f"{destination}: ok")


@main.command()
def sweep() -> None:
    """Re-enqueue comments that were stored but not scored in time, once."""
    from workers.tasks import runtime_for
    from workers.tasks import sweep as run_sweep

    settings = _settings()
    app = create_celery(settings)
    try:
        count = run_sweep(app, runtime_for(app))
    except redis.RedisError as exc:
        raise click.ClickException(
            redis_failure(settings.redis_url, "re-enqueue unscored comments", exc)
        ) from None
    click.echo(f"re-enqueued {count} comments")


if __name__ == "__main__":
    sys.exit(main())
