"""Hostile uploads through every front (HTTP API, CLI, Discord) against real workers.

Each file is refused: by the upload gate at the front (nothing stored, nothing queued), or by
the worker (the request fails as a refusal; no asset, no file left, nothing queued). The kernel
sees no open of the canaries the playlists point at: another user's avatar clip in the store,
and a file outside it. The processes that refuse stay under 500 MB. The worker time each
refusal costs is measured by `bench/hostile.py`, not asserted here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cli.progress import PLAIN_LINE
from jayavatar.ids import discord_user
from tests.abuse.canary import Canaries
from tests.abuse.hostile import cached, png_bomb, tricks
from tests.abuse.store import Snapshot, files, one_line, settled, snapshot
from tests.bot.harness import (
    People,
    make_people,
    notice,
    run_async,
    start_bot,
)
from tests.fakediscord.server import FakeDiscord
from tests.support.assets import face_clip
from tests.support.stack import ROOT, RedisProcess, Stack, env_python, free_port

pytestmark = pytest.mark.timeout(900)
OWNER = "discord-1002"  # whose avatar the playlists point at
REACH = f"../../avatars/{OWNER}/mine/clip.mp4"  # from an upload's folder in storage
PEAK_MB = 500
KEYS = ":apikey"  # API key records note their last use


@dataclass(frozen=True)
class Case:
    """A hostile upload: what it is, where it goes, and who should refuse it."""

    name: str
    kind: str  # voice | avatar
    filename: str
    data: Callable[[], bytes]
    by_worker: bool  # passes the gate (its first bytes are a real container)
    words: str


def cases(outside: Path) -> list[Case]:
    """Every case: the file-reading tricks aim relative paths at the store's canary and
    absolute ones at `outside`; then the two bombs."""
    out: list[Case] = []
    for name, filename, data in tricks(outside, REACH):
        id3, boxed = "ID3" in name, "MP4 box" in name
        words = "not a readable" if boxed else ("not audio" if id3 else "unrecognised")
        kind = "voice" if id3 else "avatar"
        out.append(Case(name, kind, filename, lambda d=data: d, id3 or boxed, words))  # type: ignore[misc]
    out.append(Case("16000x16000 PNG bomb", "avatar", "huge.png", png_bomb, False, "16000x16000"))
    black = cached("black4k", ".mp4")
    out.append(Case("119 s of 4K black", "avatar", "black.mp4", black.read_bytes, True, "too much"))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Redis, both workers, the API as a process, the bot on a fake Discord, and the canaries."""
    folder = tmp_path_factory.mktemp("hostile")
    server = RedisProcess(folder / "redis")
    server.start()
    stack = Stack(folder, server, extra_env={"JAYAVATAR_MAX_CONCURRENT": "100"})
    fake = FakeDiscord().start()
    people = make_people(fake)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        stack.start_worker("voice")
        stack.start_worker("lipsync")
        store = stack.folder / "data" / "store"
        canary = store / "avatars" / OWNER / "mine" / "clip.mp4"
        canary.parent.mkdir(parents=True)
        shutil.copyfile(face_clip(), canary)
        outside = folder / "outside" / "secret.mp4"
        outside.parent.mkdir()
        shutil.copyfile(face_clip(), outside)
        run_async(stack, lambda c: c.accounts.register("avatar", OWNER, "mine", {}))
        port = free_port()
        cmd = [str(env_python("core")), "-m", "cli.main", "api", "--port", str(port)]
        api = subprocess.Popen(cmd, cwd=ROOT, env=stack.env, stdout=subprocess.DEVNULL)
        procs.append(api)
        bot = start_bot(stack, fake, people)
        token = run_async(stack, lambda c: _key(c, "mallory"))
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz")
        yield {
            "stack": stack,
            "fake": fake,
            "people": people,
            "bot": bot,
            "api": api,
            "base": base,
            "token": token,
            "canaries": (canary, outside),
            "cases": cases(outside),
        }
        bot.kill()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        fake.stop()
        stack.stop()


async def _key(client: Any, user: str) -> str:
    from api.keys import ApiKeys

    token, _ = await ApiKeys(client.redis, client.settings, client.accounts).create(user)
    return str(token)


def _wait_http(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


# What a front does with a case: returns (refusal line or None, request id or None).
Send = Callable[[dict[str, Any], Case, Path], tuple[str | None, str | None]]


def via_api(w: dict[str, Any], case: Case, tmp: Path) -> tuple[str | None, str | None]:
    """PUT the file as the body, with the sender's file name."""
    r = httpx.put(
        f"{w['base']}/v1/{case.kind}s/evil",
        params={"filename": case.filename},
        headers={"X-API-Key": w["token"], "Content-Type": "application/octet-stream"},
        content=case.data(),
        timeout=60,
    )
    if r.status_code == 202:
        return None, str(r.json()["id"])
    assert r.status_code in (413, 422), (r.status_code, r.text)
    detail = str(r.json()["detail"])
    assert detail.startswith(repr(case.filename)), detail  # names the sender's file
    return detail, None


def via_cli(w: dict[str, Any], case: Case, tmp: Path) -> tuple[str | None, str | None]:
    """`jayavatar KIND add evil FILE`, with its peak memory measured by the kernel."""
    path = tmp / case.filename
    path.write_bytes(case.data())
    cmd = [str(env_python("core")), "-m", "cli.main", case.kind, "add", "evil", str(path)]
    with (tmp / "out").open("w") as out, (tmp / "err").open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=w["stack"].env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
    assert usage.ru_maxrss // 1024 < PEAK_MB, usage.ru_maxrss
    # The progress lines before the error are the CLI's display of the request, not its answer.
    lines = [x for x in (tmp / "err").read_text().splitlines() if not PLAIN_LINE.match(x)]
    assert os.waitstatus_to_exitcode(status) == 3, lines  # refused
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), lines
    assert "temporarily unavailable" not in lines[0] and "source." not in lines[0], lines
    if case.by_worker:
        latest = run_async(w["stack"], lambda c: c.list_requests("local", limit=1))
        return lines[0], latest[0].id
    return lines[0], None


def via_discord(w: dict[str, Any], case: Case, tmp: Path) -> tuple[str | None, str | None]:
    """`/KIND add` with the file attached, declared as media of the right kind (types lie)."""
    fake: FakeDiscord = w["fake"]
    people: People = w["people"]
    declared = "audio/mpeg" if case.kind == "voice" else "video/mp4"
    att = fake.upload(case.filename, declared, case.data())
    option = "sample" if case.kind == "voice" else "media"
    channel = fake.channel_of(people.home)
    user = discord_user(people.alice.id)
    before = _latest_request(w["stack"], user)
    interaction = fake.slash(
        people.alice, f"{case.kind} add", channel, name="evil", **{option: att}
    )
    if case.by_worker:
        # The worker may refuse before the bot ever shows the queued line, so the request is
        # found in the store rather than in the reply's Cancel button.
        return None, _request_after(w["stack"], user, before)
    answer = notice(fake, interaction, 60).content
    assert answer.startswith("⚠️ ") and repr(case.filename) in answer, answer
    return answer, None


FRONTS: dict[str, Send] = {"api": via_api, "cli": via_cli, "discord": via_discord}


def store_of(w: dict[str, Any]) -> Snapshot:
    """Redis and storage, once the bot's own bookkeeping has settled.

    Left out: what running workers change by the clock (ARQ's job, cron and health-check keys,
    and the queues, which `_drained` checks on their own), and when readers last polled the
    completion stream (its entries are compared).
    """
    stack: Stack = w["stack"]
    queues = (f"{stack.prefix}:voice", f"{stack.prefix}:lipsync")

    stream = f"{stack.prefix}:completions"
    r = redis.Redis.from_url(stack.redis.url)

    def take() -> Snapshot:
        values, stored = run_async(stack, lambda c: snapshot(c, KEYS))
        kept = {
            k: v
            for k, v in values.items()
            if not k.startswith("arq:") and not k.endswith(":health-check") and k not in queues
        }
        # A stream's dump holds when each reader last polled: compare its entries instead.
        kept[stream] = repr(r.xrange(stream)).encode()
        return kept, stored

    return settled(take)


def _drained(stack: Stack) -> bool:
    """Whether both queues come to hold no job (a finished job leaves its queue a moment after
    its request is final; the reconciler's cron passes through now and then)."""
    r = redis.Redis.from_url(stack.redis.url)
    for _ in range(100):
        if r.zcard(f"{stack.prefix}:voice") + r.zcard(f"{stack.prefix}:lipsync") == 0:
            return True
        time.sleep(0.1)
    return False


def _latest_request(stack: Stack, user: str) -> str | None:
    """Return the id of the newest request of `user`, if any."""
    latest = run_async(stack, lambda c: c.list_requests(user, limit=1))
    return str(latest[0].id) if latest else None


def _request_after(stack: Stack, user: str, before: str | None) -> str:
    """Wait for a newer request of `user` than `before` (bounded by the test timeout)."""
    while (rid := _latest_request(stack, user)) in (None, before):
        time.sleep(0.2)
    assert rid is not None
    return rid


def final(stack: Stack, rid: str) -> Any:
    """Wait for a request to be final (bounded by the test timeout, not asserted on time)."""
    while True:
        req = run_async(stack, lambda c: c.get(rid))
        if req.final:
            return req
        time.sleep(0.2)


@pytest.mark.parametrize("front", list(FRONTS))
@pytest.mark.parametrize("index", range(10))
def test_hostile_upload_is_refused_and_reads_nothing_else(
    world: dict[str, Any], front: str, index: int, tmp_path: Path
) -> None:
    case: Case = world["cases"][index]
    stack: Stack = world["stack"]
    store = stack.folder / "data" / "store"
    before = store_of(world)
    with Canaries(*world["canaries"]) as canaries:
        refusal, rid = FRONTS[front](world, case, tmp_path)
        if case.by_worker:
            assert rid is not None, refusal
            req = final(stack, rid)
            assert (req.state, req.refused) == ("failed", True), (req.state, req.error)
            assert one_line(req.error) and case.words in req.error, req.error
            assert "source." not in req.error, req.error
            asset = run_async(stack, lambda c: c.accounts.get_asset(case.kind, req.user, "evil"))
            assert asset is None
            _gone(store, rid)
            assert files(store) == before[1]
            _caught_up(stack)  # the bot has read the announcement (the next case compares)
        else:
            assert refusal is not None and one_line(refusal), refusal
            assert case.words in refusal, refusal
            after = store_of(world)
            assert after == before
        assert _drained(stack)
        assert canaries.opened() == set(), case.name


def _caught_up(stack: Stack) -> None:
    """Wait until every reader of the completion stream has read and acknowledged all of it."""
    r = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    key = f"{stack.prefix}:completions"
    for _ in range(300):
        last = r.xinfo_stream(key)["last-generated-id"]
        groups = r.xinfo_groups(key)
        if all(g["last-delivered-id"] == last and g["pending"] == 0 for g in groups):
            return
        time.sleep(0.1)
    raise AssertionError(f"the completion stream was never read to its end: {groups}")


def _gone(store: Path, rid: str) -> None:
    """Wait until the worker removed the failed request's upload (it does right after failing)."""
    for _ in range(100):
        if not (store / "uploads" / rid).exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"the upload of {rid} was left behind")


def peak_mb(pid: int) -> int:
    """Peak resident memory of a live process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmHWM for {pid}")


def engine_children(pid: int) -> list[int]:
    """The engine child of a worker: forked by the worker's fork server, its own child."""
    servers = [c for c in _children(pid) if b"forkserver" in _cmdline(c)]
    return [child for server in servers for child in _children(server)]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    """A process's command line, or nothing once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_the_refusing_processes_stayed_small(world: dict[str, Any]) -> None:
    """After every case above: the API, the bot, the workers and their engine children (which
    outlive the refusals they answer, so their peak covers every case)."""
    stack: Stack = world["stack"]
    pids = {"api": world["api"].pid, "bot": world["bot"].proc.pid}
    for kind, worker in stack.workers.items():
        assert worker.proc is not None
        pids[f"{kind} worker"] = worker.proc.pid
        for child in engine_children(worker.proc.pid):
            pids[f"{kind} engine {child}"] = child
    peaks = {name: peak_mb(pid) for name, pid in pids.items()}
    assert sum("engine" in name for name in peaks) == 2, peaks
    assert all(mb < PEAK_MB for mb in peaks.values()), peaks
