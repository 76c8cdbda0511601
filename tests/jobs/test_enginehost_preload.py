"""Engine children start from a fork server that has imported the engine (lip-sync environment)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from multiprocessing import forkserver
from multiprocessing.connection import Connection

import pytest

from jayavatar import catalog
from jayavatar.settings import Settings
from jobs import enginehost
from jobs.enginehost import EngineHost, engine_context

pytestmark = pytest.mark.env("lipsync")


def _modules_at_start(conn: Connection, names: list[str]) -> None:
    """Child: report which of `names` were imported before it imported anything, and its parent."""
    conn.send(([name for name in names if name in sys.modules], os.getppid()))


def test_engine_children_start_with_the_engine_already_imported() -> None:
    # A child forked from the fork server skips the engine's imports (torch, coqui-tts: most
    # of a restart); two children in a row come from the same server.
    forkserver._forkserver._stop()  # type: ignore[attr-defined]  # a server that preloads anew
    settings = Settings(lipsync_engine="landmark")
    ctx = engine_context(settings, "lipsync")
    names = ["engines.lipsync.landmark", "jobs.enginehost", "engines.voice.piper"]
    parents = set()
    for _ in range(2):
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_modules_at_start, args=(theirs, names), daemon=True)
        proc.start()
        assert ours.poll(60), "the engine child did not answer"
        imported, parent = ours.recv()
        assert imported == ["engines.lipsync.landmark", "jobs.enginehost"]
        proc.join(10)
        parents.add(parent)
    assert len(parents) == 1 and os.getpid() not in parents  # one fork server, not this process


def test_an_engine_the_fork_server_cannot_import_still_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A preload import that raises OSError kills the fork server; the engine then starts in a
    # fresh interpreter, where a real failure would be reported by the engine's build.
    forkserver._forkserver._stop()  # type: ignore[attr-defined]  # a server that preloads anew
    row = catalog.engine("landmark", "lipsync")
    broken = dataclasses.replace(row, preload=("tests.support.broken_preload",))
    monkeypatch.setattr(catalog, "engine", lambda name, kind=None: broken)
    servers: list[object] = []

    def counted(settings: Settings, kind: str) -> object:
        servers.append(kind)
        return engine_context(settings, kind)  # type: ignore[arg-type]

    monkeypatch.setattr(enginehost, "engine_context", counted)
    host = EngineHost(Settings(lipsync_engine="landmark"), "lipsync")
    try:
        asyncio.run(host.start())
        assert host.pid is not None
        # A restart (after a cancel or a crash) goes straight to a fresh interpreter.
        host.kill()
        asyncio.run(host.start())
        assert host.pid is not None and len(servers) == 1
    finally:
        host.kill()
        forkserver._forkserver._stop()  # type: ignore[attr-defined]
