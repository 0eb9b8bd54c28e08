"""`moderation-admin`: operator commands (moderator tokens, retention) run against Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import click
import redis

from workers.celery_app import create_celery
from workers.moderation import ROLES, check_token_name, create_token, revoke_tokens
from workers.runtime import Runtime, redis_failure
from workers.settings import ConfigError, Settings
from workers.tasks import apply_retention


@contextmanager
def _runtime(doing: str) -> Iterator[Runtime]:
    """Yield the runtime; a Redis failure ends the command with one line, not a traceback."""
    try:
        runtime = Runtime(Settings.from_env().check())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield runtime
    except redis.RedisError as exc:
        raise click.ClickException(redis_failure(runtime.settings.redis_url, doing, exc)) from None


@click.group()
def main() -> None:
    """Administer the comment moderation service."""


@main.group()
def tokens() -> None:
    """Create, list and revoke named moderator tokens."""


def _token_name(value: str) -> str:
    try:
        return check_token_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@tokens.command("create")
@click.option(
    "--name",
    required=True,
    callback=lambda _ctx, _param, value: _token_name(value),
    help="Who the token is for (shown in the audit log): letters, digits, '.', '_', '-'.",
)
@click.option("--role", type=click.Choice(ROLES), default="moderator", show_default=True)
def tokens_create(name: str, role: str) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    with _runtime("create the token") as runtime:
        token = create_token(runtime.store, name, role)  # type: ignore[arg-type]
    click.echo(token)


@tokens.command("list")
def tokens_list() -> None:
    """List token names and roles (never the tokens)."""
    with _runtime("list tokens") as runtime:
        stored = runtime.store.all_tokens()
    for info in sorted(stored.values(), key=lambda i: i["name"]):
        line = f"{info['name']}\t{info['role']}\t{info.get('created_at', '')}"
        try:
            check_token_name(str(info["name"]))
        except ValueError as exc:  # created before the name rules: authentication refuses it
            line += f"\trefused: {exc}; revoke it and create another"
        click.echo(line)


@tokens.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke every token with this name."""
    with _runtime("revoke tokens") as runtime:
        count = revoke_tokens(runtime.store, name)
    if not count:
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"revoked {count} token(s) named {name!r}")


@main.command()
def purge() -> None:
    """Apply the retention periods now (the beat scheduler also runs this hourly)."""
    with _runtime("purge expired comments") as runtime:
        purged = apply_retention(create_celery(runtime.settings), runtime)
    click.echo(json.dumps(purged))


if __name__ == "__main__":
    main()
