"""`jayavatar api` serves the HTTP API; `jayavatar apikey` manages its keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from api.keys import ApiKeys
from jayavatar.settings import Settings

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    """Return the Settings the root group built, or build them here."""
    found = ctx.find_object(Settings)
    return found if found is not None else Settings()


@click.command("api")
@click.option("--host", default=None, help="Interface to listen on (default: JAYAVATAR_API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: JAYAVATAR_API_PORT).")
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    default=None,
    help="API processes (default: JAYAVATAR_API_WORKERS, 0: one per core up to 4).",
)
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the HTTP API and the dashboard."""
    import uvicorn

    from api.app import create_app
    from api.metrics import shared_metrics
    from storage import build_storage

    settings = _settings(ctx)
    build_storage(settings)  # a bad bucket is one line at start-up, not a 500 on first use
    processes = settings.api_processes(workers)
    host, port = host or settings.api_host, port or settings.api_port
    if processes == 1:
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, proxy_headers=True, log_level="info")
        return
    # Each process builds its app from the environment, as the settings above were built.
    with shared_metrics(settings):
        uvicorn.run(
            "api.app:app_from_env",
            factory=True,
            workers=processes,
            host=host,
            port=port,
            proxy_headers=True,
            log_level="info",
        )


def _with_keys(settings: Settings, work: Callable[[ApiKeys], Awaitable[T]]) -> T:
    """Run `work(ApiKeys)` against Redis; errors reach the CLI's one-line `error:` handler."""
    from jobs.client import JobClient

    async def main() -> T:
        client = await JobClient.connect(settings)
        try:
            return await work(ApiKeys(client.redis, settings, client.accounts))
        finally:
            await client.close()

    return asyncio.run(main())


@click.group("apikey")
def apikey() -> None:
    """Create, list and revoke API keys (stored hashed; a token is shown once)."""


@apikey.command("create")
@click.argument("user")
@click.option("--admin", is_flag=True, help="Allow admin routes and admin dashboard actions.")
@click.option("--label", default="", help="A note to recognise the key by.")
@click.pass_context
def create(ctx: click.Context, user: str, admin: bool, label: str) -> None:
    """Create a key acting as USER and print its token."""

    async def work(keys: ApiKeys) -> str:
        token, record = await keys.create(user, admin=admin, label=label)
        kind = "admin key" if record.admin else "key"
        click.echo(f"created {kind} {record.key_id} for {record.user}", err=True)
        return token

    click.echo(_with_keys(_settings(ctx), work))


@apikey.command("revoke")
@click.argument("key_id")
@click.pass_context
def revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key by its id (the 12 hex digits after `jya_`)."""

    async def work(keys: ApiKeys) -> str:
        record = await keys.revoke(key_id)
        return f"revoked {record.key_id} ({record.user})"

    click.echo(_with_keys(_settings(ctx), work))


@apikey.command("list")
@click.option("--user", default=None, help="Only this user's keys.")
@click.pass_context
def list_keys(ctx: click.Context, user: str | None) -> None:
    """List keys: id, user, admin flag, created and last used (UTC)."""

    async def work(keys: ApiKeys) -> list[str]:
        return [
            "\t".join(
                (
                    k.key_id,
                    k.user,
                    "admin" if k.admin else "-",
                    _when(k.created_at),
                    _when(k.last_used_at),
                    k.label,
                )
            )
            for k in await keys.list(user)
        ]

    for line in _with_keys(_settings(ctx), work):
        click.echo(line)


def _when(ts: float) -> str:
    """Format a unix time for a listing; 'never' for zero."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else "never"
