"""CLI progress against a real stack: a live bar in a terminal, plain lines in logs, Ctrl-C.

The terminal is a pseudo-terminal from the `pty` module, so the CLI sees a TTY exactly as in
a shell; Ctrl-C is the SIGINT a terminal sends, and the answer to the prompt is typed into it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.progress import PLAIN_LINE, Board, describe
from jobs.records import Request
from tests.support.assets import demo_inputs, face_clip
from tests.support.stack import ROOT, RedisProcess, Stack, env_python

pytestmark = pytest.mark.timeout(300)
TEXT = "A progress bar shows this line moving through the voice and the lip-sync stages."
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TERMINAL_ENV = {"TERM": "xterm-256color", "COLUMNS": "150", "LINES": "40"}


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the demo voice and a face clip enrolled through the CLI (no terminal)."""
    folder = tmp_path_factory.mktemp("progress")
    server = RedisProcess(folder / "redis")
    server.start()
    stack = Stack(folder, server)
    try:
        stack.start_worker("voice")
        stack.start_worker("lipsync")
        voice, _ = demo_inputs()
        for kind, name, path in (("voice", "demo", voice), ("avatar", "face", face_clip())):
            done = jayavatar(stack, kind, "add", name, str(path))
            assert done.returncode == 0, done.stderr
            assert f"{kind} {name}: done 100%" in done.stderr.splitlines()[-1]
        yield stack
    finally:
        stack.stop()


def jayavatar(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with pipes (no terminal)."""
    cmd = [str(env_python("core")), "-m", "cli.main", *args]
    return subprocess.run(cmd, cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=240)


def render_args(out: Path, *more: str, text: str = TEXT) -> list[str]:
    """The arguments of a render of `text` into `out`."""
    return ["render", "--text", text, "--voice", "demo", "--avatar", "face", "-o", str(out), *more]


class Terminal:
    """A CLI process whose stdin, stdout and stderr are a pseudo-terminal."""

    def __init__(self, stack: Stack, *args: str) -> None:
        self.master, slave = pty.openpty()
        # A real terminal has a size; rich lays its bar out to it.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
        cmd = [str(env_python("core")), "-m", "cli.main", *args]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**stack.env, **TERMINAL_ENV},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        """Everything shown so far, without escape codes."""
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def _pump(self, wait_s: float) -> bool:
        """Read what is there within `wait_s`; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], wait_s)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the process closed its side
            return False
        self.raw += chunk
        return bool(chunk)

    def read_until(self, pattern: str, timeout_s: float = 120) -> str:
        """Read until `pattern` (a regex) shows; return the text so far."""
        deadline = time.monotonic() + timeout_s
        while not re.search(pattern, self.text):
            if time.monotonic() > deadline or not self._pump(0.2):
                raise AssertionError(f"{pattern!r} never showed; got:\n{self.text[-2000:]}")
        return self.text

    def type(self, keys: str) -> None:
        """Type into the terminal."""
        os.write(self.master, keys.encode())

    def finish(self, timeout_s: float = 240) -> tuple[int, str]:
        """Read to the end; return (exit status, text)."""
        deadline = time.monotonic() + timeout_s
        while self._pump(0.2) and time.monotonic() < deadline:
            pass
        code = self.proc.wait(max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return code, self.text


def request_id(text: str) -> str:
    """The id in the CLI's `request <id> queued` line."""
    found = re.search(r"request ([0-9a-f]{32}) queued", text)
    assert found, text[-2000:]
    return found.group(1)


def state(stack: Stack, rid: str) -> str:
    """A request's state, read from Redis."""
    raw = redis.Redis.from_url(stack.redis.url).get(f"{stack.prefix}:req:{rid}")
    assert isinstance(raw, bytes), raw
    return Request.model_validate_json(raw).state


def wait_final(stack: Stack, rid: str, timeout_s: float = 180) -> str:
    """Wait until a request is final; return its state."""
    deadline = time.monotonic() + timeout_s
    while (found := state(stack, rid)) not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"request {rid} still {found}"
        time.sleep(0.2)
    return found


def test_a_terminal_gets_a_live_bar_with_stage_percent_and_eta(
    enrolled: Stack, tmp_path: Path
) -> None:
    out = tmp_path / "live.mp4"
    # Long enough that the lip-sync stage spans several of the bar's polls (0.25 s) however
    # fast the render is, so a percent and an ETA show before it is done.
    term = Terminal(enrolled, *render_args(out, text=" ".join([TEXT] * 4)))
    code, text = term.finish()
    assert code == 0, text
    rid = request_id(text)
    assert f"render {rid[:8]}: lip-sync" in text
    assert "━" in text and re.search(r"\d+%", text) and "ETA " in text
    assert re.search(rf"render {rid[:8]}: done .*100%", text)
    # Drawn in place: the terminal got cursor movements, not one line per update.
    assert "\r" in term.raw.decode(errors="replace") or "\x1b[" in term.raw.decode()
    assert text.strip().splitlines()[-1] == str(out) and out.stat().st_size > 10_000


def test_logs_get_plain_lines_in_stage_order(enrolled: Stack, tmp_path: Path) -> None:
    out = tmp_path / "plain.mp4"
    # Long enough that a poll (every 0.5 s here) sees the lip-sync stage, however fast it is.
    done = jayavatar(enrolled, *render_args(out, text=" ".join([TEXT] * 4)))
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
    rid = request_id(done.stderr)
    lines = [line for line in done.stderr.splitlines() if PLAIN_LINE.match(line)]
    stages = [line.split(f"render {rid[:8]}: ", 1)[1] for line in lines]
    # Stages only move forward; "queued" may not show at all when a worker takes the job at once.
    order = ("queued", "voice", "lip-sync", "done")
    ranks = [[s.startswith(name) for name in order].index(True) for s in stages]
    assert ranks == sorted(ranks) and stages[-1] == "done 100%", stages
    assert any(s.startswith("lip-sync") for s in stages), stages
    assert len(lines) == len(set(lines)) <= 40, "one line per stage or tenth, no repeats"
    assert done.stdout.strip().splitlines()[-1] == str(out)


def test_quiet_prints_only_the_result(enrolled: Stack, tmp_path: Path) -> None:
    out = tmp_path / "quiet.mp4"
    done = jayavatar(enrolled, *render_args(out, "--quiet"))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == f"{out}\n"


def interrupt(term: Terminal) -> str:
    """Press Ctrl-C once the render shows its progress; return the request id."""
    rid = request_id(term.read_until(r"request [0-9a-f]{32} queued"))
    term.read_until(rf"render {rid[:8]}: ")
    os.killpg(term.proc.pid, signal.SIGINT)
    term.read_until(r"Cancel request [0-9a-f]{32}\? \[y/N\]")
    return rid


def test_ctrl_c_leaves_the_request_running_by_default(enrolled: Stack, tmp_path: Path) -> None:
    term = Terminal(enrolled, *render_args(tmp_path / "left.mp4"))
    rid = interrupt(term)
    term.type("\n")
    code, text = term.finish()
    assert code == 130, text
    assert f"request {rid} left running" in text and f"jayavatar follow {rid}" in text
    followed = jayavatar(enrolled, "follow", rid)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == f"request {rid} done\n"


def test_ctrl_c_can_cancel_the_request(enrolled: Stack, tmp_path: Path) -> None:
    term = Terminal(enrolled, *render_args(tmp_path / "cancelled.mp4"))
    rid = interrupt(term)
    term.type("y\n")
    code, text = term.finish()
    assert code == 130, text
    assert f"request {rid} cancelled" in text
    assert state(enrolled, rid) == "cancelled"
    assert not (tmp_path / "cancelled.mp4").exists()


def test_ctrl_c_without_a_terminal_leaves_it_running(enrolled: Stack, tmp_path: Path) -> None:
    cmd = [str(env_python("core")), "-m", "cli.main", *render_args(tmp_path / "x.mp4")]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=enrolled.env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = [proc.stderr.readline() for _ in range(2)]  # "request … queued", first progress
    assert PLAIN_LINE.match(seen[1]), seen
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rid = request_id(seen[0])
    assert f"request {rid} left running" in err and "Cancel request" not in err
    assert wait_final(enrolled, rid) == "done"


def record(**fields: object) -> Request:
    """A render record in the given state."""
    return Request(id="0" * 32, kind="render", user="local", **fields)


def test_stage_words_follow_the_record() -> None:
    assert describe(record(), 3) == ("queued #3", None)
    assert describe(record(state="voice", running=True, progress=0.4, phase="speak"), None) == (
        "voice (speaking)",
        0.4,
    )
    assert describe(record(state="lipsync", phase="queued"), 1) == ("lip-sync queued #1", None)
    running = record(state="lipsync", running=True, progress=0.25, phase="warp")
    assert describe(running, None) == ("lip-sync", 0.25)
    encoding = record(state="lipsync", running=True, progress=1.0, phase="encode")
    assert describe(encoding, None) == ("encoding", 1.0)
    failed = record(state="failed", error="no face found")
    assert describe(failed, None) == ("failed: no face found", None)
    assert describe(record(state="done", progress=1.0), None) == ("done", 1.0)


def test_plain_lines_repeat_nothing_and_estimate_once_progress_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Board("plain") as board:
        line = board.line("render 01234567")
        for share in (None, None, 0.05, 0.06, 0.15, 0.5):
            line.show("lip-sync", share)
        line.finish("done", ok=True)
    lines = capsys.readouterr().err.splitlines()
    assert [PLAIN_LINE.sub("", x) for x in lines[:2]] == [
        "render 01234567: lip-sync",
        "render 01234567: lip-sync 5%, ETA 0:00",
    ]
    assert [PLAIN_LINE.sub("", x).split(",")[0] for x in lines[2:]] == [
        "render 01234567: lip-sync 15%",
        "render 01234567: lip-sync 50%",
        "render 01234567: done 100%",
    ]
