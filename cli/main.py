"""The `jayavatar` command line: render, enroll, run workers, inspect and cancel requests."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cli import progress
from jayavatar import ids, redis_server
from jayavatar.errors import (
    BadInput,
    JayAvatarError,
    Misconfigured,
    TransientError,
    UserError,
    one_line,
)
from jayavatar.settings import Settings

T = TypeVar("T")
CLI_USER = ids.LOCAL


#: Exit codes, also listed in `jayavatar --help`.
EXIT_FAILED = 1  # a fault on our side: engine, worker, Redis, disk
EXIT_CONFIG = 2  # bad command line or configuration
EXIT_REFUSED = 3  # the input was refused: file, text, name, permissions, quota
EXIT_CANCELLED = 4


class Failed(JayAvatarError):
    """A request that failed on our side; its recorded reason is shown as it is."""


class Cancelled(JayAvatarError):
    """A request that was cancelled while the command waited for it."""


class Cli(click.Group):
    """A click group that turns every JayAvatar error into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, mapping the error tree to a one-line message and an exit code."""
        try:
            return super().invoke(ctx)
        except Cancelled:
            click.echo("cancelled", err=True)
            sys.exit(EXIT_CANCELLED)
        except Misconfigured as exc:
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(EXIT_CONFIG)
        except Failed as exc:
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
            sys.exit(EXIT_FAILED)
        except JayAvatarError as exc:
            click.echo(f"error: {one_line(exc)}", err=True)
            sys.exit(EXIT_REFUSED if isinstance(exc, UserError) else EXIT_FAILED)
        except ValueError as exc:  # pydantic settings errors: a bad JAYAVATAR_* variable
            click.echo(
                f"error: invalid configuration: {' '.join(str(exc).split())[:300]}", err=True
            )
            sys.exit(EXIT_CONFIG)


@click.group(cls=Cli)
@click.pass_context
def main(ctx: click.Context) -> None:
    """JayAvatar: type a line, get a video of you saying it.

    \b
    Exit codes:
      0  done
      1  failed on our side (engine, worker, Redis, disk); trying again may work
      2  bad command line or configuration
      3  refused: the file, text, name, permission or quota was not accepted
      4  cancelled
    """
    ctx.obj = Settings()


def run_client(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Connect a JobClient, run `work(client)`, and close it."""
    from jobs.client import JobClient

    async def go() -> T:
        client = await JobClient.connect(settings)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(go())


@main.command()
@click.option("--text", required=True, help="What the avatar says.")
@click.option("--voice", default=None, help="Voice name (default: your only or default voice).")
@click.option("--avatar", default=None, help="Avatar name (default: your only or default avatar).")
@click.option("--language", default=None, help="Language code, e.g. en.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for the render.")
@progress.quiet_option
@click.pass_obj
def render(
    settings: Settings,
    text: str,
    voice: str | None,
    avatar: str | None,
    language: str | None,
    output: Path,
    timeout: float,
    quiet: bool,
) -> None:
    """Render TEXT with an enrolled voice and avatar into an MP4."""

    _check_writable(output)  # before submitting: a render that cannot be saved wastes quota

    async def work(client: Any) -> None:
        req = await client.submit_render(CLI_USER, text, voice, avatar, language)
        with progress.Board(progress.choose_mode(quiet)) as board:
            board.note(f"request {req.id} queued")
            line = board.line(f"render {req.id[:8]}")
            done = await progress.follow(client, req.id, line, timeout, CLI_USER)
        outcome(done, f"request {done.id}")
        _copy_out(client.output_path(done), output)
        if not quiet:
            click.echo(_timings(done.timings), err=True)

    run_client(settings, work)
    click.echo(str(output))


def outcome(done: Any, subject: str) -> None:
    """Raise what a final request that is not done means: refused, cancelled or failed."""
    if done.state == "done":
        return
    if done.state == "cancelled":
        raise Cancelled(done.error)
    reason = done.error or "no reason given"
    raise BadInput(f"{subject}: {reason}") if done.refused else Failed(f"{subject}: {reason}")


def _check_writable(dest: Path) -> None:
    """Refuse an output path that cannot be written, before any work is queued."""
    if dest.is_dir():
        raise BadInput(f"{dest}: is a folder; give a file name for the video")
    probe = dest.with_name(f".{dest.name}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except FileExistsError:
        raise BadInput(f"{dest}: cannot write there (part of the path is a file)") from None
    except OSError as exc:
        raise BadInput(f"{dest}: cannot write there ({exc.strerror or exc})") from None


def _copy_out(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Failed(f"{dest}: the video could not be saved ({exc.strerror or exc})") from None


def _timings(timings: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.2f}s" for k, v in sorted(timings.items()))


#: How the job client names the file in its refusals; the CLI puts the user's path in front.
THE_FILE = "the file"


def _about(exc: UserError, path: Path) -> UserError:
    """Name the user's file in a refusal that is about it."""
    message = str(exc)
    return type(exc)(f"{path}: {message}") if THE_FILE in message else exc


def _asset_group(kind: str) -> click.Group:
    group = click.Group(name=kind, help=f"Enroll, list and remove {kind}s.")
    group.add_command(_asset_add(kind))

    @group.command("list")
    @click.pass_obj
    def list_(settings: Settings) -> None:
        async def work(client: Any) -> Any:
            return await client.accounts.usable(kind, CLI_USER)

        for asset in run_client(settings, work):
            click.echo(f"{asset.ref}\t{json.dumps(asset.meta, sort_keys=True)}")

    @group.command("remove")
    @click.argument("name")
    @click.pass_obj
    def remove(settings: Settings, name: str) -> None:
        async def work(client: Any) -> Any:
            return await client.accounts.remove(kind, CLI_USER, name)

        click.echo(f"removed {kind} {name!r} ({run_client(settings, work)} files)")

    list_.help = f"List your {kind}s."
    remove.help = f"Delete a {kind} and all its files."
    return group


def _asset_add(kind: str) -> click.Command:
    @click.command("add")
    @click.argument("name")
    @click.argument("path", type=click.Path(path_type=Path))
    @click.option("--replace", is_flag=True, help=f"Overwrite an existing {kind} of that name.")
    @click.option("--timeout", default=600.0, show_default=True)
    @progress.quiet_option
    @click.pass_obj
    def add(
        settings: Settings, name: str, path: Path, replace: bool, timeout: float, quiet: bool
    ) -> None:
        async def work(client: Any) -> Any:
            submit = client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
            try:
                req = await submit(CLI_USER, name, path, replace=replace, label=THE_FILE)
            except UserError as exc:
                raise _about(exc, path) from None
            with progress.Board(progress.choose_mode(quiet)) as board:
                line = board.line(f"{kind} {req.name}")
                done = await progress.follow(client, req.id, line, timeout, CLI_USER)
            outcome(done, str(path))
            return done

        done = run_client(settings, work)
        click.echo(f"{kind} {done.name!r} ready: {json.dumps(done.result, sort_keys=True)}")

    add.help = f"Enroll a {kind} NAME from a file at PATH."
    return add


main.add_command(_asset_group("voice"))
main.add_command(_asset_group("avatar"))


@main.command()
@click.argument("request_id")
@click.pass_obj
def status(settings: Settings, request_id: str) -> None:
    """Show a request's state, progress and timings."""

    async def work(client: Any) -> Any:
        req = await client.get(request_id)
        return req, await client.queue_position(request_id)

    req, position = run_client(settings, work)
    data = req.model_dump(exclude={"origin", "text"}) | {"queue_position": position}
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@main.command("follow")
@click.argument("request_id")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def follow_cmd(settings: Settings, request_id: str, timeout: float) -> None:
    """Show a request's progress until it is final, then print its state."""

    async def work(client: Any) -> Any:
        with progress.Board(progress.choose_mode(False)) as board:
            line = board.line(f"request {request_id[:8]}")
            return await progress.follow(client, request_id, line, timeout, CLI_USER)

    done = run_client(settings, work)
    click.echo(f"request {done.id} {done.state}")


@main.command()
@click.argument("request_id")
@click.pass_obj
def cancel(settings: Settings, request_id: str) -> None:
    """Cancel a queued or running request."""

    async def work(client: Any) -> Any:
        return await client.cancel(request_id, CLI_USER)

    click.echo(f"request {run_client(settings, work).id} cancelled")


@main.command()
@click.argument("kind", type=click.Choice(["voice", "lipsync"]))
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@click.pass_obj
def worker(settings: Settings, kind: str, burst: bool) -> None:
    """Run the voice or lip-sync worker (in that worker's Python environment)."""
    from jobs.worker import build_worker

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not redis_server.reachable(settings.redis_url):
        raise TransientError(f"cannot reach Redis at {settings.redis_url.split('@')[-1]}")
    from storage import build_storage

    build_storage(settings)  # a bad bucket or cache folder is one line now, not a failed job later
    build_worker(settings, kind, burst=burst).run()  # type: ignore[arg-type]


@main.command("redis")
@click.pass_obj
def redis_cmd(settings: Settings) -> None:
    """Start a local redis-server (AOF in the data dir) unless the configured one answers."""
    click.echo(f"redis {redis_server.ensure(settings)} at {settings.redis_url.split('@')[-1]}")


@main.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("out/demo.mp4"))
@progress.quiet_option
@click.pass_obj
def demo(settings: Settings, output: Path, quiet: bool) -> None:
    """Render the demo video through the real queues and print per-stage timings."""
    from cli.demo import run_demo

    run_demo(settings, output, quiet=quiet)


def _register() -> None:
    """Add the commands that live in their own modules (imported lazily by click on use)."""
    from cli.apikeys import api, apikey
    from cli.bot import bot
    from cli.doctor import doctor
    from cli.evaluate import eval_cmd
    from cli.models import models

    for command in (api, apikey, bot, doctor, eval_cmd, models):
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
