"""Runs an engine in a child process that the worker can kill.

ARQ cancels a job's coroutine on timeout, abort or SIGTERM, but a thread doing heavy work cannot be
stopped. So each worker keeps its engine (built once, which may take seconds) in one long-lived
child process and talks to it over a pipe: a call, progress messages, then a result or an error.
Cancelling the call kills the child; the next call starts a fresh one.

Children are forked from a fork server (multiprocessing's "forkserver") that imported the
engine's modules once: torch and coqui-tts take most of an engine's start, and a child started
again after a cancel or a crash skips them. The fork server never touches CUDA (each child
makes its own context), holds no engine, and exits when the worker does; a child exits when
the fork server, its parent, is gone.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import resource
import time
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal, TypeVar

from engines.calls import EngineCall
from jayavatar import catalog, errors
from jayavatar.lifeline import watch_parent
from jayavatar.settings import Settings

log = logging.getLogger(__name__)

EngineKind = Literal["voice", "lipsync"]
Progress = Callable[[float, str], Awaitable[None]]
Check = Callable[[], Awaitable[None]]
PROGRESS_EVERY_S = 0.25
R = TypeVar("R")


class EngineHost:
    """One child process holding one engine; calls are serialised.

    With `engine=False` the child builds no engine and runs only tool calls (those that need no
    engine, such as `engines.calls.Evaluate`) at a lower CPU priority: after-delivery work
    (quality reports) that must not slow a render.
    """

    def __init__(self, settings: Settings, kind: EngineKind, engine: bool = True) -> None:
        self.settings = settings
        self.kind = kind
        self.engine = engine
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        # Set once the fork server has died importing the engine: every later start of this
        # host would only pay that failing import again.
        self._spawn_only = False

    @property
    def pid(self) -> int | None:
        """Return the child's pid while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    async def start(self) -> None:
        """Start the child and wait until its engine is built."""
        if self.pid is not None:
            return
        spawn = mp.get_context("spawn")
        try:
            ctx = spawn if self._spawn_only else engine_context(self.settings, self.kind)
            proc, parent = self._launch(ctx)
        except (EOFError, OSError) as exc:
            # The fork server died importing the engine (a broken CUDA library raises OSError,
            # which it does not survive): a fresh interpreter meets the same error in the
            # engine's build, which reports it in full.
            log.warning("engine fork server failed (%s); starting the engine on its own", exc)
            self._spawn_only = True
            proc, parent = self._launch(spawn)
        self._proc, self._conn = proc, parent
        try:
            await self._receive(None, None)
        except BaseException:
            self.kill()
            raise
        log.info("%s engine ready in process %s", self.kind, proc.pid)

    def _launch(self, ctx: Any) -> tuple[BaseProcess, Connection]:
        """Start the child in `ctx`; return it and this side of its pipe."""
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(child, self.settings, self.kind, self.engine), daemon=True
        )
        try:
            proc.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return proc, parent

    async def call(
        self, call: EngineCall[Any, R], progress: Progress | None, check: Check | None
    ) -> R:
        """Run `call` (see `engines.calls`) in the child; return its result.

        `progress` receives the engine's reports; `check` runs about once a second and may raise to
        abandon the call (the child is then killed).
        """
        async with self._lock:
            await self.start()
            assert self._conn is not None
            self._conn.send(("call", call))
            try:
                result: R = await self._receive(progress, check)
                return result
            except errors.UserError as exc:
                # A refusal the child answered is no fault of the child: keep it, so refused
                # uploads cannot make the worker rebuild its engine again and again.
                if not getattr(exc, "answered", False):
                    self.kill()
                raise
            except BaseException:
                self.kill()
                raise

    async def _receive(self, progress: Progress | None, check: Check | None) -> Any:
        assert self._conn is not None and self._proc is not None
        last_check = time.monotonic()
        while True:
            ready = await asyncio.to_thread(self._conn.poll, 0.2)
            if ready:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    raise self._died() from None
                tag = message[0]
                if tag in ("ready", "ok"):
                    return message[1]
                if tag == "progress" and progress is not None:
                    await progress(message[1], message[2])
                elif tag == "err":
                    error = _rebuild(message[1], message[2])
                    error.answered = True  # type: ignore[attr-defined]
                    raise error
            elif not self._proc.is_alive():
                raise self._died()
            if check is not None and time.monotonic() - last_check >= 1.0:
                last_check = time.monotonic()
                await check()

    def _died(self) -> errors.TransientError:
        code = self._proc.exitcode if self._proc is not None else None
        self.kill()
        return errors.TransientError(f"the {self.kind} engine process died (exit code {code})")

    def kill(self) -> None:
        """Kill the child at once; the next call starts a new one."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(5)
        if conn is not None:
            conn.close()


def engine_context(settings: Settings, kind: EngineKind) -> Any:
    """The multiprocessing context of engine children: a fork server with the engine imported.

    The modules are set before the server first starts (once per worker); a module that fails
    to import there is only imported later, by the child that builds the engine.
    """
    ctx = mp.get_context("forkserver")
    name = settings.engine_name(kind)
    # "__main__" too (multiprocessing's default): imported once in the server, so each child
    # does not import the worker's command-line module again.
    ctx.set_forkserver_preload(["__main__", __name__, *catalog.engine(name, kind).modules])
    return ctx


def _rebuild(kind: str, message: str) -> BaseException:
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.JayAvatarError):
        return cls(message)
    return errors.EngineError(message)


def _serve(conn: Connection, settings: Settings, kind: EngineKind, build: bool = True) -> None:
    """Child process: build the engine once, then answer calls until the pipe closes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # Exit quietly when the worker that started this child is gone (killed, not stopped).
    watch_parent(os.getppid(), lambda: os._exit(0))
    cap_memory(settings, kind)
    if not build:
        os.nice(10)  # after-delivery work yields the CPU to renders
    try:
        engine = _build(settings, kind) if build else None
    except BaseException as exc:
        _send(conn, ("err", _kind(exc), _message(exc)))
        return
    _send(conn, ("ready", getattr(engine, "name", "tools")))
    while True:
        try:
            _tag, call = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = call.run(engine, _throttled(conn))
        except _Orphaned:
            os._exit(0)
        except BaseException as exc:
            if not isinstance(exc, errors.UserError):
                log.error("engine call %s failed:\n%s", call.step, traceback.format_exc())
            _send(conn, ("err", _kind(exc), _message(exc)))
            continue
        _send(conn, ("ok", result))


def _build(settings: Settings, kind: EngineKind) -> Any:
    from engines import registry

    build = registry.build_voice_engine if kind == "voice" else registry.build_lipsync_engine
    return build(settings)


class _Orphaned(BaseException):
    """The worker went away mid-call: nobody will read the result."""


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    # A closed pipe means the worker died (SIGKILL): leave at once and quietly, no traceback.
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
        os._exit(0)


def cap_memory(settings: Settings, kind: EngineKind) -> int:
    """Cap the child's address space, so a decoder bomb ends the child and not the worker.

    Returns the cap in bytes (0: none). GPU engines are left uncapped: CUDA reserves address
    space far beyond the memory it uses.
    """
    engine = settings.engine_name(kind)
    on_gpu = engine in ("xtts", "wav2lip") and settings.device != "cpu"
    if settings.engine_memory_mb <= 0 or on_gpu:
        return 0
    cap = settings.engine_memory_mb * 2**20
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


def _throttled(conn: Connection) -> Callable[[float, str], None]:
    last = [0.0]

    def report(fraction: float, phase: str) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or fraction >= 1.0:
            last[0] = now
            try:
                conn.send(("progress", float(fraction), str(phase)))
            except (BrokenPipeError, ConnectionResetError, OSError):
                raise _Orphaned from None

    return report


def _kind(exc: BaseException) -> str:
    if isinstance(exc, errors.JayAvatarError):
        return type(exc).__name__
    if isinstance(exc, MemoryError):
        return "TransientError"
    return "EngineError"


def _message(exc: BaseException) -> str:
    if isinstance(exc, errors.JayAvatarError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
