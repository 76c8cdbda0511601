"""The `jayavatar` CLI against a real stack: happy paths and every bad input, one line each."""

from __future__ import annotations

import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.progress import PLAIN_LINE
from tests.support.assets import demo_inputs, face_clip, garbage, png, wav
from tests.support.stack import ROOT, Stack, env_python, running_stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cli_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with a short sample limit, so a 'too long' sample stays small."""
    with running_stack(
        tmp_path_factory.mktemp("cli"),
        {"JAYAVATAR_MAX_SAMPLE_S": "20", "JAYAVATAR_MAX_TEXT_CHARS": "300"},
    ) as stack:
        yield stack


def jayavatar(
    stack: Stack, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI from the core environment against the stack."""
    cmd = [str(env_python("core")), "-m", "cli.main", *args]
    return subprocess.run(
        cmd, cwd=ROOT, env={**stack.env, **(env or {})}, capture_output=True, text=True, timeout=240
    )


def stored_files(stack: Stack) -> list[str]:
    """Return every file in the stack's storage, temp folder included."""
    root = stack.folder / "data" / "store"
    return (
        sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        if root.exists()
        else []
    )


def active(stack: Stack) -> int:
    """Return how many requests are not final."""
    return int(redis.Redis.from_url(stack.redis.url).scard(f"{stack.prefix}:active"))


def cut(src: Path, dest: Path, seconds: float, repeat: int = 1) -> Path:
    """Write the first `seconds` of a WAV, `repeat` times over."""
    with wave.open(str(src)) as w:
        params = w.getparams()
        data = w.readframes(int(seconds * w.getframerate()))
    with wave.open(str(dest), "wb") as out:
        out.setparams(params)
        out.writeframes(data * repeat)
    return dest


@pytest.fixture(scope="module")
def enrolled(cli_stack: Stack) -> Stack:
    """The demo voice and a face clip enrolled through the CLI."""
    voice, _ = demo_inputs()
    ok = jayavatar(cli_stack, "voice", "add", "demo", str(voice))
    assert ok.returncode == 0, ok.stderr
    assert "voice 'demo' ready" in ok.stdout
    ok = jayavatar(cli_stack, "avatar", "add", "face", str(face_clip()))
    assert ok.returncode == 0, ok.stderr
    return cli_stack


def test_render_writes_the_mp4(enrolled: Stack, tmp_path: Path) -> None:
    out = tmp_path / "hello.mp4"
    done = jayavatar(
        enrolled,
        "render",
        "--text",
        "Happy birthday, Sam!",
        "--voice",
        "demo",
        "--avatar",
        "face",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out)
    assert out.stat().st_size > 10_000 and b"ftyp" in out.read_bytes()[:32]
    rid = done.stderr.split("request ", 1)[1].split()[0]
    status = jayavatar(enrolled, "status", rid)
    assert status.returncode == 0 and '"state": "done"' in status.stdout


def test_replace_is_needed_to_overwrite(enrolled: Stack) -> None:
    voice, _ = demo_inputs()
    again = jayavatar(enrolled, "voice", "add", "demo", str(voice))
    assert again.returncode == 3  # refused
    assert "already have a voice named 'demo'" in again.stderr
    replaced = jayavatar(enrolled, "voice", "add", "demo", str(voice), "--replace")
    assert replaced.returncode == 0, replaced.stderr


def bad_cases(tmp: Path) -> list[tuple[str, list[str], str]]:
    """(case, CLI arguments, expected words of the one-line error)."""
    voice, _ = demo_inputs()
    render = ["render", "--voice", "demo", "--avatar", "face", "-o", str(tmp / "x.mp4"), "--text"]
    return [
        ("empty text", [*render, ""], "text is empty"),
        ("whitespace text", [*render, " \n\t "], "text is empty"),
        ("text over the limit", [*render, "a" * 301], "limit is 300"),
        ("control character", [*render, "hello\x07there"], "control character"),
        ("no words", [*render, "!!! ???"], "no words"),
        (
            "unknown voice",
            ["render", "--voice", "nobody", "--avatar", "face", "-o", "x.mp4", "--text", "hi"],
            "unknown voice",
        ),
        (
            "unknown avatar",
            ["render", "--voice", "demo", "--avatar", "nobody", "-o", "x.mp4", "--text", "hi"],
            "unknown avatar",
        ),
        ("corrupt sample", ["voice", "add", "v1", str(garbage(tmp / "corrupt.wav"))], "not"),
        (
            "silent sample",
            ["voice", "add", "v2", str(wav(tmp / "silent.wav", 4, "silence"))],
            "silent",
        ),
        (
            "too short sample",
            ["voice", "add", "v3", str(cut(voice, tmp / "short.wav", 1.2))],
            "short",
        ),
        (
            "too long sample",
            ["voice", "add", "v4", str(cut(voice, tmp / "long.wav", 16, 2))],
            "long",
        ),
        ("empty file", ["voice", "add", "v5", str(_empty(tmp / "empty.wav"))], "empty"),
        ("text file as audio", ["voice", "add", "v6", str(_text(tmp / "notes.mp3"))], "not"),
        ("missing file", ["voice", "add", "v7", str(tmp / "nope.wav")], "no such file"),
        ("bad name", ["voice", "add", "../etc", str(voice)], "invalid name"),
        ("avatar without a face", ["avatar", "add", "a1", str(png(tmp / "wall.png"))], "face"),
        ("avatar not a video", ["avatar", "add", "a2", str(garbage(tmp / "clip.mp4"))], "not"),
        ("unknown request", ["status", "0" * 32], "no such request"),
        ("malformed request id", ["cancel", "../../x"], "no such request"),
    ]


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("these are my meeting notes, not audio\n" * 50)
    return path


def test_bad_input_gives_one_line_and_leaves_nothing(enrolled: Stack, tmp_path: Path) -> None:
    before = stored_files(enrolled)
    failures = []
    for case, args, words in bad_cases(tmp_path):
        done = jayavatar(enrolled, *args)
        # Progress lines may come first (a refused enrollment was queued); the error is one line.
        lines = [x for x in done.stderr.strip().splitlines() if not PLAIN_LINE.match(x)]
        ok = done.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: ")
        if not ok or words not in lines[0].lower():
            failures.append(f"{case}: rc={done.returncode} stderr={done.stderr.strip()!r}")
    assert not failures, "\n".join(failures)
    assert stored_files(enrolled) == before
    assert active(enrolled) == 0


def test_unreachable_redis_is_one_line(enrolled: Stack) -> None:
    done = jayavatar(
        enrolled,
        "render",
        "--text",
        "hi",
        "-o",
        "x.mp4",
        env={"JAYAVATAR_REDIS_URL": "redis://127.0.0.1:9/0"},
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "error: temporarily unavailable: cannot reach Redis at redis://127.0.0.1:9/0"
    )


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [("JAYAVATAR_MAX_TEXT_CHARS", "lots", "max_text_chars"),
     ("JAYAVATAR_WAV2LIP_PRESET", "placebo", "wav2lip_preset"),
     ("JAYAVATAR_API_WORKERS", "-1", "api_workers")],
)  # fmt: skip
def test_bad_setting_is_one_line(enrolled: Stack, variable: str, value: str, field: str) -> None:
    done = jayavatar(enrolled, "status", "0" * 32, env={variable: value})
    assert done.returncode == 2
    assert (
        done.stderr.startswith("error: invalid configuration")
        and field in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )


def test_refusals_name_the_users_file_and_exit_3(enrolled: Stack, tmp_path: Path) -> None:
    notes = _text(tmp_path / "notes.mp3")
    silent = wav(tmp_path / "quiet take.wav", 4, "silence")
    for path, words in ((notes, "not a voice sample"), (silent, "silent")):
        done = jayavatar(enrolled, "voice", "add", "v9", str(path))
        lines = [x for x in done.stderr.splitlines() if not PLAIN_LINE.match(x)]
        assert done.returncode == 3, done.stderr
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), lines
        assert words in lines[0] and "source." not in lines[0], lines
        assert "temporarily unavailable" not in lines[0]


def test_an_unwritable_output_is_refused_before_submitting(enrolled: Stack, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out.mp4"
    before = stored_files(enrolled)
    queued = redis.Redis.from_url(enrolled.redis.url).keys(f"{enrolled.prefix}:req:*")
    done = jayavatar(enrolled, "render", "--text", "Hi.", "-o", str(out))
    assert done.returncode == 3
    assert done.stderr.strip() == f"error: {out}: cannot write there (part of the path is a file)"
    assert redis.Redis.from_url(enrolled.redis.url).keys(f"{enrolled.prefix}:req:*") == queued
    assert stored_files(enrolled) == before


def test_a_cancelled_render_says_cancelled_and_exits_4(enrolled: Stack, tmp_path: Path) -> None:
    cmd = [str(env_python("core")), "-m", "cli.main", "render", "--voice", "demo"]
    cmd += ["--avatar", "face", "-o", str(tmp_path / "c.mp4"), "--text", "Stop me. " * 30]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=enrolled.env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    rid = proc.stderr.readline().split()[1]
    assert jayavatar(enrolled, "cancel", rid).returncode == 0
    _, err = proc.communicate(timeout=120)
    answer = [x for x in err.splitlines() if not PLAIN_LINE.match(x)]
    assert (proc.returncode, answer) == (4, ["cancelled"])
    assert not (tmp_path / "c.mp4").exists()
