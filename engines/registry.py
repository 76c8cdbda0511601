"""Builds the configured engines from the engine table; imports engine packages only when asked."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, cast

from jayavatar import catalog

if TYPE_CHECKING:
    from engines.base import LipSyncEngine, VoiceEngine
    from jayavatar.settings import Settings


def build_engine(settings: Settings, kind: catalog.Kind, name: str) -> Any:
    """Build engine `name` of `kind` from its table row and load its models now.

    Loading here (at worker start, in the engine's child process) makes a missing or broken
    model file stop the worker at once, naming the file and the fix. An unknown name is a
    configuration error (ValueError), which Settings normally catch first.
    """
    row = catalog.engine(name, kind)
    module, _, attr = row.target.partition(":")
    engine = getattr(importlib.import_module(module), attr)(settings)
    load = getattr(engine, "load", None)
    if callable(load):
        load()
    return engine


def build_voice_engine(settings: Settings) -> VoiceEngine:
    """Build the voice engine named by `settings.voice_engine`."""
    return cast("VoiceEngine", build_engine(settings, "voice", settings.voice_engine))


def build_lipsync_engine(settings: Settings) -> LipSyncEngine:
    """Build the lip-sync engine named by `settings.lipsync_engine`."""
    return cast("LipSyncEngine", build_engine(settings, "lipsync", settings.lipsync_engine))
