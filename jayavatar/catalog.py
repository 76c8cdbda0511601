"""The one table of engines: what each is, where it runs, what it speaks and which files it loads.

Settings validation, the engine registry, `jayavatar models …`, `jayavatar doctor`, the
language checks of every front end, the Makefile and the Docker targets all read this table.
Adding an engine is its code plus one row of `ENGINES`.

Standard library only and free of project imports, so settings can validate against it and
`python jayavatar/catalog.py envs` works before any environment is built.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

Kind = Literal["voice", "lipsync"]

HUB = "https://huggingface.co"
CPML = "Coqui Public Model License 1.0.0 (non-commercial use only)"
CPML_URL = "https://coqui.ai/cpml"
WAV2LIP_LICENCE = "Wav2Lip licence: non-commercial research use only (trained on LRS2)"
WAV2LIP_URL = "https://github.com/Rudrabha/Wav2Lip#license-and-citation"


@dataclass(frozen=True)
class ModelFile:
    """One file of a model, with the facts that identify the official release."""

    path: str  # relative to the models directory
    url: str | None  # official download; None where the source has no direct link
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None  # where only the name-embedded prefix is published
    min_size: int = 1
    required: bool = True  # False for training-only files


@dataclass(frozen=True)
class Model:
    """A set of files that an engine loads together."""

    name: str
    licence: str
    licence_url: str
    files: tuple[ModelFile, ...]
    how_to_get: str
    optional: bool = False  # an alternative exists, so its engine can run without it
    #: `module:function(path)` that loads the model strictly in its engine's environment and
    #: raises ModelMissing naming the file and the fix (None: the format check is all there is).
    check: str | None = None


@dataclass(frozen=True)
class Env:
    """A Python environment: its folder, requirements file and the distributions it must hold."""

    folder: str
    packages: tuple[str, ...]
    requirements: str | None  # envs/<name>.txt; None for the core
    default: bool  # built by `make envs` (the others on demand)


@dataclass(frozen=True)
class Engine:
    """One row: an engine's name, kind, class, environment, languages, models and device."""

    name: str
    kind: Kind
    target: str  # `module:Class`, built with the worker's Settings
    env: str  # key of ENVS
    device: str  # what it needs to run, for people
    languages: tuple[str, ...] = ()  # voice engines: the codes users may ask for
    models: tuple[Model, ...] = ()
    # Modules the engine children's fork server imports besides `target`'s (its heavy imports
    # that `target` defers), so a restarted engine child skips them (see jobs.enginehost).
    preload: tuple[str, ...] = ()

    @property
    def modules(self) -> tuple[str, ...]:
        """Every module a fork server imports ahead for this engine, its own first."""
        return (self.target.partition(":")[0], *self.preload)


ENVS: dict[str, Env] = {
    "core": Env(".venv", ("arq", "redis", "discord.py", "click"), None, True),
    "voice": Env(".venvs/voice", ("piper-tts", "soundfile", "av"), "envs/voice.txt", True),
    "lipsync": Env(".venvs/lipsync", ("mediapipe", "av", "torch", "numpy"),
                   "envs/lipsync.txt", True),
    "xtts": Env(".venvs/xtts", ("coqui-tts", "torch", "torchaudio", "transformers", "av"),
                "envs/xtts.txt", False),
}  # fmt: skip

#: The 17 languages XTTS v2 speaks, as bare codes ("zh", which XTTS spells "zh-cn").
XTTS_LANGUAGES = (
    "en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru",
    "nl", "cs", "ar", "zh", "hu", "ko", "ja", "hi",
)  # fmt: skip


def _xtts_url(name: str) -> str:
    """Return the hub path of an XTTS v2 file; `pull` may swap the hub for a mirror."""
    return f"{HUB}/coqui/XTTS-v2/resolve/main/{name}"


def _wav2lip(name: str, optional: bool) -> Model:
    """One official Wav2Lip generator checkpoint (no published digest: import only)."""
    return Model(
        name=name,
        licence=WAV2LIP_LICENCE,
        licence_url=WAV2LIP_URL,
        how_to_get=f"download {name}.pth from the Wav2Lip README, then "
        f"`jayavatar models import {name} FILE`",
        files=(ModelFile(f"wav2lip/{name}.pth", None, min_size=140_000_000),),
        optional=optional,
        check="engines.lipsync.wav2lip_model:verify_checkpoint",
    )


# Sizes and digests of the XTTS v2.0.3 release files as published on the hub.
XTTS_V2 = Model(
    name="xtts_v2",
    licence=CPML,
    licence_url=CPML_URL,
    how_to_get="jayavatar models pull xtts_v2",
    files=(
        ModelFile("xtts_v2/config.json", _xtts_url("config.json"), 4368,
                  "ef262b1454dd2a77e1461b0b2cd53e19b8a7624cc131b837d36df67356bc75e8"),
        ModelFile("xtts_v2/model.pth", _xtts_url("model.pth"), 1867929118,
                  "c7ea20001c6a0a841c77e252d8409f6a74fb423e79b3206a0771ba5989776187"),
        ModelFile("xtts_v2/vocab.json", _xtts_url("vocab.json"), 361219,
                  "928260878a59da8a72a2a5b7687fea29d5106137669d90945430fe17e415304a"),
        ModelFile("xtts_v2/speakers_xtts.pth", _xtts_url("speakers_xtts.pth"), 7754818,
                  "f0f6137c19a4eab0cbbe4c99b5babacf68b1746e50da90807708c10e645b943b",
                  required=False),
        ModelFile("xtts_v2/dvae.pth", _xtts_url("dvae.pth"), 210514388,
                  "b29bc227d410d4991e0a8c09b858f77415013eeb9fba9650258e96095557d97a",
                  required=False),
        ModelFile("xtts_v2/mel_stats.pth", _xtts_url("mel_stats.pth"), 1067,
                  "1f69422a8a8f344c4fca2f0c6b8d41d2151d6615b7321e48e6bb15ae949b119c",
                  required=False),
    ),
    check="engines.voice.xtts_model:verify_folder",
)  # fmt: skip

# S3FD face detector as packaged by the face-alignment project; its name carries the first
# hex digits of its sha256, the torch hub convention.
S3FD = Model(
    name="s3fd",
    licence="BSD-3-Clause (face-alignment project)",
    licence_url="https://github.com/1adrianb/face-alignment/blob/master/LICENSE",
    how_to_get="jayavatar models pull s3fd",
    files=(
        ModelFile("s3fd/s3fd.pth",
                  "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
                  sha256_prefix="619a316812", min_size=80_000_000),
    ),
    optional=True,  # the engine may track faces with FaceMesh instead
    check="engines.lipsync.s3fd:verify_weights",
)  # fmt: skip

ENGINES: dict[str, Engine] = {
    "piper": Engine("piper", "voice", "engines.voice.piper:PiperEngine", "voice", "CPU",
                    languages=("en",)),
    "xtts": Engine("xtts", "voice", "engines.voice.xtts:XttsEngine", "xtts",
                   "CPU or CUDA (CUDA recommended)", languages=XTTS_LANGUAGES, models=(XTTS_V2,),
                   preload=("engines.voice.xtts_preload",)),
    "landmark": Engine("landmark", "lipsync", "engines.lipsync.landmark:LandmarkEngine", "lipsync",
                       "CPU"),
    "wav2lip": Engine("wav2lip", "lipsync", "engines.lipsync.wav2lip:Wav2LipEngine", "lipsync",
                      "a CUDA GPU (CPU works, slowly)",
                      models=(_wav2lip("wav2lip_gan", False), _wav2lip("wav2lip", True), S3FD)),
}  # fmt: skip


def engine(name: str, kind: Kind | None = None) -> Engine:
    """Return the row of engine `name` (of `kind`), or raise ValueError listing the known ones."""
    row = ENGINES.get(name)
    if row is None or (kind is not None and row.kind != kind):
        known = ", ".join(n for n, e in ENGINES.items() if kind is None or e.kind == kind)
        label = f"{kind} engine" if kind else "engine"
        raise ValueError(f"unknown {label} {name!r}; known: {known}")
    return row


def models() -> dict[str, Model]:
    """Return every model of every engine, by name, in table order."""
    return {m.name: m for row in ENGINES.values() for m in row.models}


def owner(model_name: str) -> Engine:
    """Return the engine row that loads the model called `model_name`."""
    return next(row for row in ENGINES.values() if any(m.name == model_name for m in row.models))


def spoken(engine_name: str, language: str) -> str | None:
    """Return the engine's code for `language` ("zh-CN" -> "zh", "" -> "en"), or None.

    A code with a region falls back to its bare language when the engine lists only that.
    """
    code = language.strip().lower().replace("_", "-") or "en"
    languages = engine(engine_name).languages
    if code in languages:
        return code
    bare = code.split("-")[0]
    return bare if bare in languages else None


def env_names(default_only: bool = False) -> list[str]:
    """Return the engine environments (not the core), the default-built ones when asked."""
    return [n for n, e in ENVS.items() if e.requirements and (e.default or not default_only)]


if __name__ == "__main__":  # `python jayavatar/catalog.py envs [--default]`, for the Makefile
    if sys.argv[1:2] == ["envs"]:
        print(" ".join(env_names(default_only="--default" in sys.argv)))
