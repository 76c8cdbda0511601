"""Progress in the command line: a live bar per request in a terminal, plain lines in logs.

A `Board` is one command's display. In a terminal (stderr is a TTY and TERM is not "dumb") it
draws one rich progress line per request: stage, bar, percent, elapsed time and, once the stage
reports progress, an ETA. Elsewhere (logs, CI, pipes) it prints a plain line whenever the stage
changes or its percent crosses a tenth, each starting with ``[m:ss]``, the time since that
request's line began; ``--quiet`` prints nothing. Progress goes to stderr, so stdout keeps
only a command's result.

`follow` shows a request until it is final. Ctrl-C while it waits asks whether to cancel the
request or leave it running; leaving it (the default, and the only choice without a terminal
to ask on) prints its id and how to follow it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TextIO, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from jayavatar.errors import BadInput, TransientError

Mode = Literal["live", "plain", "quiet"]
F = TypeVar("F", bound=Callable[..., Any])
#: How often a request's record is read while waiting, by mode.
POLL_S = {"live": 0.25, "plain": 0.5, "quiet": 0.5}
#: A plain progress line: "[m:ss] label: stage …". Anything else on stderr is not progress.
PLAIN_LINE = re.compile(r"^\[\d+:\d\d\] ")
#: Below this share done, an ETA is mostly noise.
MIN_ETA_SHARE = 0.02
#: The exit status of a command left by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130

PHASES = {"encode": "encoding", "track": "tracking the face", "speak": "speaking"}


def quiet_option(func: F) -> F:
    """Add `-q/--quiet` (no progress output) to a command."""
    return click.option("-q", "--quiet", is_flag=True, help="Print no progress.")(func)


def choose_mode(quiet: bool, stream: TextIO | None = None) -> Mode:
    """Return "quiet", "live" in a terminal, or "plain" anywhere else."""
    if quiet:
        return "quiet"
    stream = stream or sys.stderr
    terminal = hasattr(stream, "isatty") and stream.isatty()
    return "live" if terminal and os.environ.get("TERM", "") != "dumb" else "plain"


def clock(seconds: float) -> str:
    """Format seconds as m:ss (or h:mm:ss)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _EtaColumn(ProgressColumn):
    """Time left, counting down from the last estimate; blank until there is one."""

    def render(self, task: Task) -> Text:
        """Render the ETA of one line."""
        eta_at = task.fields.get("eta_at")
        if eta_at is None or task.finished:
            return Text("")
        return Text(f"ETA {clock(eta_at - time.monotonic())}", style="progress.remaining")


class _PercentColumn(ProgressColumn):
    """The stage's percent, blank while the stage reports none (queued, starting)."""

    def render(self, task: Task) -> Text:
        """Render the percent of one line."""
        share = task.fields.get("share")
        return Text("" if share is None else f"{100 * share:3.0f}%", style="progress.percentage")


class Board:
    """The progress display of one command."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.console = Console(stderr=True)
        self.progress: Progress | None = None
        if mode == "live":
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=28),
                _PercentColumn(),
                TimeElapsedColumn(),
                _EtaColumn(),
                console=self.console,
            )

    def __enter__(self) -> Board:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.pause()

    @property
    def poll_s(self) -> float:
        """How often to read a request's record."""
        return POLL_S[self.mode]

    def pause(self) -> None:
        """Stop drawing (before a prompt, or at the end); the last frame stays on screen."""
        if self.progress is not None:
            self.progress.stop()

    def line(self, label: str) -> Line:
        """Add a line for one request or download."""
        task = None if self.progress is None else self.progress.add_task(label, share=None)
        return Line(self, label, task)

    def note(self, text: str) -> None:
        """Print a message above the progress lines (nothing when quiet)."""
        if self.mode == "live":
            self.console.print(text, highlight=False, markup=False)
        elif self.mode == "plain":
            click.echo(text, err=True)

    def step(self, text: str) -> None:
        """Announce a step of a longer command, such as the demo's."""
        if self.mode == "live":
            self.console.print(f"[bold]» {text}[/bold]", highlight=False)
        elif self.mode == "plain":
            click.echo(f"» {text}", err=True)


class Line:
    """One request's (or download's) line: its stage, share done, elapsed time and ETA."""

    def __init__(self, board: Board, label: str, task: Any) -> None:
        self.board, self.label, self.task = board, label, task
        self.started = time.monotonic()
        self.stage = ""
        self.stage_started = self.started
        self.printed: tuple[str, int] | None = None

    def show(self, stage: str, share: float | None, detail: str = "") -> None:
        """Show the current stage and its share done (None: the stage reports none).

        `detail` (such as bytes so far) is shown after the stage but does not start a new one.
        """
        now = time.monotonic()
        if stage != self.stage:
            self.stage, self.stage_started = stage, now
        eta = self._eta(share, now)
        if detail:
            stage = f"{stage} {detail}"
        if self.board.progress is not None:
            self.board.progress.update(
                self.task,
                description=f"{self.label}: {stage}",
                completed=share or 0.0,
                total=1.0,
                share=share,
                eta_at=None if eta is None else now + eta,
            )
        elif self.board.mode == "plain":
            self._plain(stage, share, eta, now)

    def finish(self, stage: str, ok: bool) -> None:
        """Show the final stage and stop the line's clock."""
        self.show(stage, 1.0 if ok else None)
        if self.board.progress is not None:
            self.board.progress.stop_task(self.task)

    def _eta(self, share: float | None, now: float) -> float | None:
        if share is None or not MIN_ETA_SHARE <= share < 1.0:
            return None
        return (now - self.stage_started) * (1.0 - share) / share

    def _plain(self, stage: str, share: float | None, eta: float | None, now: float) -> None:
        tenth = -1 if share is None else math.floor(10 * share + 1e-9)
        if self.printed == (stage, tenth):
            return
        self.printed = (stage, tenth)
        text = f"[{clock(now - self.started)}] {self.label}: {stage}"
        if share is not None:
            text += f" {100 * share:.0f}%"
        if eta is not None:
            text += f", ETA {clock(eta)}"
        click.echo(text, err=True)


def describe(req: Any, position: int | None) -> tuple[str, float | None]:
    """Return (stage words, share done or None) for a request record and its queue position."""
    if req.final:
        detail = f": {req.error}" if req.state == "failed" and req.error else ""
        return req.state + detail, 1.0 if req.state == "done" else None
    queued = f" #{position}" if position else ""
    if req.state == "queued" or not req.running:
        where = "lip-sync queued" if req.state == "lipsync" else "queued"
        return where + queued, None
    stage = {"voice": "voice", "lipsync": "lip-sync", "enroll": "enrolling"}.get(req.state, "")
    phase = PHASES.get(req.phase, "")
    if req.state == "lipsync" and phase == "encoding":
        stage = "encoding"
    elif phase and phase != stage:
        stage = f"{stage} ({phase})"
    share = float(req.progress) if req.progress > 0 else None
    return stage or req.state, share


class _Interrupted(Exception):
    """Ctrl-C arrived while waiting for a request."""


async def follow(client: Any, rid: str, line: Line, timeout_s: float, user: str) -> Any:
    """Show a request's progress until it is final and return it; Ctrl-C asks what to do."""
    try:
        return await _watch(client, rid, line, timeout_s)
    except _Interrupted:
        await _ask_and_leave(client, rid, line.board, user)
        raise  # unreachable: _ask_and_leave always exits


async def _watch(client: Any, rid: str, line: Line, timeout_s: float) -> Any:
    interrupted = asyncio.Event()
    deadline = time.monotonic() + timeout_s
    with _on_sigint(interrupted.set):
        while True:
            req = await client.get(rid)
            position = None if req.final or req.running else await client.queue_position(rid)
            if req.final:
                line.finish(describe(req, position)[0], ok=req.state == "done")
                return req
            line.show(*describe(req, position))
            if time.monotonic() >= deadline:
                raise TransientError(f"request {rid} is still {req.state} after {timeout_s:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupted.wait(), line.board.poll_s)
            if interrupted.is_set():
                raise _Interrupted


@contextlib.contextmanager
def _on_sigint(callback: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT to `callback` inside the block (where the loop allows signal handlers)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _ask_and_leave(client: Any, rid: str, board: Board, user: str) -> None:
    """Ask whether to cancel the request (default: no), act on it and exit with status 130."""
    board.pause()
    cancel = False
    if sys.stdin.isatty():
        try:
            cancel = click.confirm(f"\nCancel request {rid}?", default=False, err=True)
        except click.Abort:  # a second Ctrl-C, or the end of input: leave it running
            click.echo("", err=True)
    if cancel:
        try:
            done = await client.cancel(rid, user)
            click.echo(f"request {done.id} cancelled", err=True)
        except BadInput as exc:  # it finished while we asked
            click.echo(str(exc), err=True)
    else:
        click.echo(
            f"request {rid} left running; follow it with `jayavatar follow {rid}` "
            f"or check it with `jayavatar status {rid}`",
            err=True,
        )
    raise click.exceptions.Exit(INTERRUPTED)
