"""The calls a worker sends to its engine process, one frozen dataclass per call.

A call carries its arguments (paths and small values, never bytes) and knows how to run itself
against the engine the child built: mypy checks each `run` against the engine Protocols in
`engines.base`. The child passes its progress callback in; the result goes back over the pipe.
Calls marked as tool calls need no engine and also run in the engine-less report child.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from engines.base import LipSyncEngine, ProgressFn, VoiceEngine

E = TypeVar("E")
R = TypeVar("R")


class EngineCall(ABC, Generic[E, R]):
    """One call to an engine process: what it needs (`E`) and what it returns (`R`)."""

    #: Short name of the step, for timings, logs and timeout messages.
    step: ClassVar[str]

    @abstractmethod
    def run(self, engine: E, progress: ProgressFn) -> R:
        """Do the work in the engine process and return the result to send back."""


@dataclass(frozen=True)
class Synthesize(EngineCall[VoiceEngine, float]):
    """Speak `text` in the voice of `voice_dir` into `out_wav`; returns the seconds of speech."""

    step: ClassVar[str] = "synthesize"
    text: str
    language: str
    voice_dir: Path
    out_wav: Path

    def run(self, engine: VoiceEngine, progress: ProgressFn) -> float:
        """Run `VoiceEngine.synthesize`."""
        return engine.synthesize(self.text, self.language, self.voice_dir, self.out_wav, progress)


@dataclass(frozen=True)
class Enroll(EngineCall[VoiceEngine, dict[str, Any]]):
    """Validate a voice sample and write the voice into `out_dir`; returns its metadata."""

    step: ClassVar[str] = "enroll"
    sample: Path
    out_dir: Path

    def run(self, engine: VoiceEngine, progress: ProgressFn) -> dict[str, Any]:
        """Run `VoiceEngine.enroll`."""
        return engine.enroll(self.sample, self.out_dir)


@dataclass(frozen=True)
class Prepare(EngineCall[LipSyncEngine, dict[str, Any]]):
    """Validate avatar media and write its prepared data into `out_dir`; returns its metadata."""

    step: ClassVar[str] = "prepare"
    media: Path
    out_dir: Path

    def run(self, engine: LipSyncEngine, progress: ProgressFn) -> dict[str, Any]:
        """Run `LipSyncEngine.prepare`."""
        return engine.prepare(self.media, self.out_dir)


@dataclass(frozen=True)
class Render(EngineCall[LipSyncEngine, dict[str, Any]]):
    """Render the avatar speaking `audio` into `out_mp4`; returns render statistics."""

    step: ClassVar[str] = "render"
    avatar_dir: Path
    audio: Path
    out_mp4: Path
    metadata: dict[str, str] = field(default_factory=dict)
    text: str = ""
    language: str = ""

    def run(self, engine: LipSyncEngine, progress: ProgressFn) -> dict[str, Any]:
        """Run `LipSyncEngine.render`."""
        return engine.render(
            self.avatar_dir,
            self.audio,
            self.out_mp4,
            progress,
            self.metadata,
            self.text,
            self.language,
        )


@dataclass(frozen=True)
class FitToSize(EngineCall[object, dict[str, Any]]):
    """Re-encode `src` under `max_bytes` into `dst` (a tool call: any engine, or none)."""

    step: ClassVar[str] = "fit"
    src: Path
    dst: Path
    max_bytes: int

    def run(self, engine: object, progress: ProgressFn) -> dict[str, Any]:
        """Run `engines.media.fit.fit_to_size`."""
        from engines.media.fit import fit_to_size

        # Typed here: the core environment, which lacks the media stack, reads it as Any.
        report: dict[str, Any] = fit_to_size(self.src, self.dst, self.max_bytes)
        return report


@dataclass(frozen=True)
class Evaluate(EngineCall[object, dict[str, Any]]):
    """Measure a finished render against its avatar, voice and script (a tool call)."""

    step: ClassVar[str] = "evaluate"
    mp4: Path
    avatar_dir: Path
    voice_dir: Path
    text: str
    language: str
    plot: Path | None = None

    def run(self, engine: object, progress: ProgressFn) -> dict[str, Any]:
        """Run `engines.quality.report.evaluate_render`, drawing the picture to `plot`."""
        from engines.quality.report import evaluate_render

        report: dict[str, Any] = evaluate_render(
            self.mp4, self.avatar_dir, self.voice_dir, self.text, self.language, self.plot
        )
        return report
