"""`moderation-admin`: operator commands (moderator tokens, retention) run against Redis."""

from __future__ import annotations

import json

import click

from workers.celery_app import create_celery
from workers.moderation import ROLES, check_token_name, create_token, revoke_tokens
from workers.runtime import Runtime
from workers.settings import ConfigError, Settings
from workers.tasks import apply_retention


def _runtime() -> Runtime:
    try:
        return Runtime(Settings.from_env().check())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


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
    token = create_token(_runtime().store, name, role)  # type: ignore[arg-type]
    click.echo(token)


@tokens.command("list")
def tokens_list() -> None:
    """List token names and roles (never the tokens)."""
    for info in sorted(_runtime().store.all_tokens().values(), key=lambda i: i["name"]):
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
    count = revoke_tokens(_runtime().store, name)
    if not count:
        raise click.ClickException(f"no token named {name!r}")
    click.echo(f"revoked {count} token(s) named {name!r}")


@main.command()
def purge() -> None:
    """Apply the retention periods now (the beat scheduler also runs this hourly)."""
    runtime = _runtime()
    click.echo(json.dumps(apply_retention(create_celery(runtime.settings), runtime)))


if __name__ == "__main__":
    main()
