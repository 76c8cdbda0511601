"""Inputs for the quality-report tests: real offline-engine speech and renders, built once.

The speech comes from the voice environment (Piper, matched to the demo voice with WORLD) and
is cached per machine, since it is slow to make and never changes. Renders are made fresh in
the lip-sync environment by the landmark engine, so they always reflect the current code.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.assets import CACHE, demo_inputs, face_clip
from tests.support.stack import ROOT, env_python

TEXT = "Happy birthday, Sam! I hope this year brings you sunshine, laughter and good friends."

_SPEAK = """
import sys
from pathlib import Path
from engines.voice.piper import PiperEngine
from jayavatar.settings import Settings
sample, out, text = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
engine = PiperEngine(Settings(_env_file=None))
engine.enroll(sample, out / "voice")
engine.synthesize(text, "en", out / "voice", out / "speech.wav", lambda f, p: None)
"""

_RENDER = """
import sys
from pathlib import Path
from engines.lipsync.landmark import LandmarkEngine
from tests.support.quality_cases import shift_audio
from jayavatar.settings import Settings
clip, speech, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
engine = LandmarkEngine(Settings(_env_file=None))
engine.prepare(clip, out / "avatar")
engine.render(out / "avatar", speech, out / "good.mp4", lambda f, p: None, {}, sys.argv[4], "en")
shift_audio(out / "good.mp4", out / "shifted.mp4")
"""


def matched_speech() -> tuple[Path, Path]:
    """Return (voice folder, speech.wav): the demo voice enrolled with piper, saying TEXT."""
    folder = CACHE / "quality-speech"
    if not (folder / "speech.wav").exists():
        sample, _ = demo_inputs()
        tmp = folder.with_name(folder.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(
            [str(env_python("voice")), "-c", _SPEAK, str(sample), str(tmp), TEXT],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    return folder / "voice", folder / "speech.wav"


def landmark_renders(out: Path) -> dict[str, Path]:
    """Render TEXT on the 2 s test face into `out` (lip-sync env); also a copy with late audio.

    Returns paths: avatar, voice, good (honest render), shifted (audio 5 frames late).
    """
    voice, speech = matched_speech()
    subprocess.run(
        [
            str(env_python("lipsync")),
            "-c",
            _RENDER,
            str(face_clip()),
            str(speech),
            str(out),
            TEXT,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return {
        "avatar": out / "avatar",
        "voice": voice,
        "good": out / "good.mp4",
        "shifted": out / "shifted.mp4",
    }
