"""Stored media is opened with the sniffed demuxer only; headers are checked before decoding.

Every file-reading trick (HLS playlists, concat scripts, playlists behind an ID3 tag or inside an
MP4 box) is stored under the name an upload used to keep, then read the ways the workers read
media. Each is refused, and the kernel sees no open of the canary it points at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

from engines.media import video as media
from engines.media.guard import FREE_PX, PX_PER_BYTE, Budget, Limits, open_input
from engines.media.probe import probe
from jayavatar.errors import BadInput
from tests.abuse.canary import Canaries
from tests.abuse.hostile import cached, hls, png_bomb, tricks
from tests.support.assets import face_clip
from tests.support.stack import ROOT

pytestmark = [pytest.mark.env("lipsync"), pytest.mark.timeout(300)]
LIMITS = Limits(max_pixels=3840 * 2160, max_seconds=120.0, fps=25.0)
RID = "a" * 32


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Path]:
    """A storage root holding another user's avatar clip (the canary); returns (root, clip)."""
    clip = tmp_path / "avatars" / "discord-2" / "mine" / "clip.mp4"
    clip.parent.mkdir(parents=True)
    shutil.copyfile(face_clip(), clip)
    (tmp_path / "uploads" / RID).mkdir(parents=True)
    return tmp_path, clip


def reads(path: Path) -> list[str]:
    """Read `path` every way a worker reads media; return the ones that did not refuse it."""
    through = []
    for name, read in (
        ("probe", lambda: probe(path, LIMITS)),
        ("frames", lambda: next(media.iter_frames(path))),
        ("audio", lambda: media.load_audio(path, 16_000)),
        ("pingpong", lambda: next(media.iter_pingpong(path, 2, 2, 25.0))),
    ):
        try:
            read()
        except BadInput:
            continue
        through.append(name)
    return through


def test_the_canary_sees_an_unguarded_open(store: tuple[Path, Path]) -> None:
    root, clip = store
    upload = root / "uploads" / RID / "source.m3u8"
    upload.write_bytes(hls("../../avatars/discord-2/mine/clip.mp4"))
    with Canaries(clip) as canary:
        with av.open(str(upload)) as container:  # what workers used to do
            next(container.decode(video=0))
        assert canary.opened() == {clip}


@pytest.mark.parametrize("case", range(8))
def test_file_reading_tricks_never_open_the_canary(store: tuple[Path, Path], case: int) -> None:
    root, clip = store
    name, sent, data = tricks(clip, "../../avatars/discord-2/mine/clip.mp4")[case]
    # The name an upload was stored under before the gate: the sender's extension.
    upload = root / "uploads" / RID / f"source{Path(sent).suffix}"
    upload.write_bytes(data)
    with Canaries(clip) as canary:
        assert reads(upload) == [], name
        assert canary.opened() == set(), name


def test_stored_media_opens_by_content_whatever_its_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "source.m3u8"
    shutil.copyfile(face_clip(), misnamed)
    with open_input(misnamed) as container:
        assert container.format.name.startswith("mov")
    assert probe(misnamed, LIMITS).kind == "video"


def test_a_png_bomb_is_refused_from_its_header_in_little_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb())
    code = (
        "import sys; from pathlib import Path; "
        "from engines.media.probe import probe; from engines.media.guard import Limits\n"
        "try:\n    probe(Path(sys.argv[1]), Limits(3840 * 2160, 120.0, 25.0))\n"
        "except Exception as exc:\n    print(exc)\n"
        # VmHWM is this program's own peak: ru_maxrss would carry over the forking test
        # process's peak, which exec does not reset.
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')) // 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(bomb)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    refusal, peak_mb = out.stdout.strip().splitlines()
    assert refusal == "bomb.png is 16000x16000; at most 8,294,400 pixels per frame are allowed"
    assert int(peak_mb) < 500, peak_mb


def test_tiny_video_promising_minutes_of_4k_is_refused_before_decoding() -> None:
    black = cached("black4k", ".mp4")
    assert black.stat().st_size < 100_000
    with pytest.raises(BadInput, match="too much decoding for so small a file"):
        probe(black, LIMITS)


def test_the_decode_budget_grows_with_the_file(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"\0" * 1000)
    budget = Budget(small)
    budget.spend(FREE_PX)
    budget.spend(PX_PER_BYTE * 1000)
    with pytest.raises(BadInput, match="decodes to far more video than its size allows"):
        budget.spend(1)
