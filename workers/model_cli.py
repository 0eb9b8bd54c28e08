"""`moderation-model`: the model CLI plus the commands that need the service's Redis."""

from __future__ import annotations

from pathlib import Path

import click
import redis

from model.cli import cli
from workers.labels import export_labels
from workers.runtime import Runtime
from workers.settings import ConfigError, Settings


@cli.command(name="export-labels")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="JSONL file to write (text, spam, toxic, source, comment_id, decided_at).",
)
def export_labels_command(out: Path) -> None:
    """Export moderators' decisions from Redis as training labels (no emails)."""
    try:
        settings = Settings.from_env().check()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    runtime = Runtime(settings)
    try:
        runtime.redis.ping()  # fail before any file is created
        count = export_labels(runtime.store, out.resolve())
    except redis.RedisError as exc:
        raise click.ClickException(
            f"cannot read moderator decisions from Redis ({type(exc).__name__}: {exc}); "
            "is MODERATION_REDIS_URL right and Redis running?"
        ) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc}") from None
    click.echo(f"wrote {count} labels to {out}")


def main() -> None:
    """Run the moderation-model CLI."""
    cli()


if __name__ == "__main__":
    main()
