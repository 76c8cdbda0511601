"""The end of a chaos run: count what the fake Discord shows, check Redis and storage, make a table.

A delivery is a message whose content carries a request's final tag (`-# request `<id>``): the
edited reply, a channel post or a DM. More than one such message for a request is a duplicate;
none is a loss. The same message edited to its final content twice is one post (the user sees one
message) and is only reported.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.fakediscord.state import World

if TYPE_CHECKING:
    from tests.chaos.cluster import Cluster
    from tests.chaos.faults import Chaos, Outcome
    from tests.chaos.run import RunConfig, Submissions
    from tests.fakediscord.server import FakeDiscord
    from tests.support.stack import Stack

FINAL = re.compile(r"-# request `([0-9a-f]{12})`")
FINAL_STATES = ("done", "failed", "cancelled")
PROCESSES = ("redis", "voice", "lipsync", "bot")


def final_posts(world: World) -> dict[str, list[int]]:
    """Return, per 12-character request id prefix, the messages showing its final result."""
    found: dict[str, list[int]] = {}
    for message in world.messages.values():
        for short in set(FINAL.findall(message.content)):
            found.setdefault(short, []).append(message.id)
    return found


def final_reedits(world: World) -> int:
    """Return how many times a message was edited to a final content it already showed."""
    repeats = 0
    for message in world.messages.values():
        finals = [content for content, _files in message.history if FINAL.search(content)]
        repeats += max(0, len(finals) - 1)
    return repeats


def videos(world: World) -> Counter[str]:
    """Return how many live messages carry each `<request id>.mp4`."""
    counts: Counter[str] = Counter()
    for message in world.messages.values():
        for att in message.attachments:
            name = world.attachments[att].filename
            if name.endswith(".mp4"):
                counts[name.removesuffix(".mp4")] += 1
    return counts


@dataclass
class Report:
    """Everything a chaos run found."""

    seed: int
    asked: int
    records: list[dict[str, Any]]
    posts: dict[str, list[int]]
    videos: Counter[str]
    reedits: int
    outcomes: list[Outcome]
    exits: dict[str, int]
    sent: Submissions
    orphans: list[str]
    temps: list[str]
    settled: bool
    active_left: int
    exit_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def deliveries(self, rid: str) -> int:
        """Return how many messages show a request's final result."""
        return len(self.posts.get(rid[:12], []))

    @property
    def lost(self) -> list[str]:
        """Requests nobody was told about."""
        return [r["id"] for r in self.records if self.deliveries(r["id"]) == 0]

    @property
    def duplicates(self) -> int:
        """Extra posts beyond one per request."""
        return sum(max(0, self.deliveries(r["id"]) - 1) for r in self.records)

    @property
    def nonfinal(self) -> list[str]:
        """Requests left queued or running."""
        return [f"{r['id']} {r['state']}" for r in self.records if r["state"] not in FINAL_STATES]

    @property
    def video_problems(self) -> list[str]:
        """Done renders whose post lacks the video, or videos posted more than once."""
        out = []
        for r in self.records:
            count = self.videos.get(r["id"], 0)
            if r["state"] == "done" and count != 1:
                out.append(f"{r['id']}: the video was posted {count} times")
            if r["state"] != "done" and count:
                out.append(f"{r['id']} is {r['state']} but a video was posted")
        return out

    def problems(self) -> list[str]:
        """Return every broken promise, one line each (empty when the run is clean)."""
        out = [] if self.settled else ["the run did not settle: " + "; ".join(self.notes)]
        out += [f"lost: {rid}" for rid in self.lost]
        out += [
            f"posted {self.deliveries(r['id'])} times: {r['id']}"
            for r in self.records
            if self.deliveries(r["id"]) > 1
        ]
        out += [f"not final: {line}" for line in self.nonfinal]
        out += self.video_problems
        out += [f"orphan file: {p}" for p in self.orphans]
        out += [f"temp file left: {p}" for p in self.temps]
        if self.active_left:
            out.append(f"{self.active_left} ids left in the active set")
        return out

    def table(self) -> str:
        """Return the run's summary table."""
        states = Counter(r["state"] for r in self.records)
        applied = [o for o in self.outcomes if o.applied]
        lines = [
            f"chaos run, seed {self.seed}: {self.asked} requests asked through Discord, "
            f"{len(self.records)} created; {len(self.sent.interactions)} interactions "
            f"({self.sent.unanswered} unanswered, {len(self.sent.refusals)} refused, sent again); "
            f"Cancel pressed on {self.sent.cancels}",
            "",
            "| process | SIGKILL | SIGTERM | SIGSTOP | unplanned exits "
            "| recover max s | recover median s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in (*PROCESSES, "all"):
            mine = [o for o in applied if name in ("all", o.fault.target)]
            count = Counter(o.fault.action for o in mine)
            times = [o.recover_s for o in mine if o.recover_s is not None]
            exits = sum(self.exits.values()) if name == "all" else self.exits.get(name, 0)
            worst = f"{max(times):.1f}" if times else "-"
            middle = f"{statistics.median(times):.1f}" if times else "-"
            lines.append(
                f"| {name} | {count['kill']} | {count['term']} | {count['stop']} | {exits} "
                f"| {worst} | {middle} |"
            )
        lines += [
            "",
            "| requests | done | failed | cancelled | deliveries | duplicates | lost | non-final "
            "| orphan files | temp files | final re-edits |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {len(self.records)} | {states['done']} | {states['failed']} "
            f"| {states['cancelled']} "
            f"| {sum(self.deliveries(r['id']) for r in self.records)} | {self.duplicates} "
            f"| {len(self.lost)} | {len(self.nonfinal)} | {len(self.orphans)} | {len(self.temps)} "
            f"| {self.reedits} |",
        ]
        failures = sorted({r["error"] for r in self.records if r["state"] == "failed"})
        lines += [f"failed: {e}" for e in failures]
        lines += [f"refused: {text}" for text in sorted(set(self.sent.refusals))]
        lines += [f"unplanned exit: {note[:300]}" for note in self.exit_notes]
        return "\n".join(lines)


def audit(
    stack: Stack,
    fake: FakeDiscord,
    cluster: Cluster,
    chaos: Chaos,
    sent: Submissions,
    config: RunConfig,
    settled: bool,
    who: list[str],
) -> Report:
    """Collect the run's outcome from the fake Discord, Redis and the storage folder."""
    from tests.chaos.run import request_records

    client = cluster.client()
    records = request_records(client, stack.prefix, who)
    assets = {_s(k) for k in client.keys(f"{stack.prefix}:assets:*")}
    allowed = allowed_files(records, assets, stack.prefix)
    orphans, temps = storage_leftovers(stack.folder / "data" / "store", allowed)
    report = Report(
        seed=config.seed,
        asked=config.requests,
        records=records,
        posts=fake.call(final_posts),
        videos=fake.call(videos),
        reedits=fake.call(final_reedits),
        outcomes=list(chaos.outcomes),
        exits={name: m.unplanned_exits for name, m in cluster.members.items()},
        sent=sent,
        orphans=orphans,
        temps=temps,
        settled=settled,
        active_left=int(client.scard(f"{stack.prefix}:active")),
        exit_notes=[n for m in cluster.members.values() for n in m.exit_notes],
    )
    if not settled:
        report.notes += [
            f"{r['id']} {r['state']} running={r['running']}"
            for r in records
            if r["state"] not in FINAL_STATES
        ]
        report.notes.append(json.dumps(_s(client.xinfo_groups(f"{stack.prefix}:completions"))))
    return report


def allowed_files(records: list[dict[str, Any]], assets: set[str], prefix: str) -> list[str]:
    """Return the storage prefixes that may hold files: enrolled assets and finished renders."""
    done = [r["output_key"] for r in records if r["state"] == "done" and r["output_key"]]
    # A finished render may have its quality report and picture beside it: <request>.quality.*
    allowed = done + [
        key.removesuffix(".mp4") + f".quality.{ext}" for key in done for ext in ("json", "png")
    ]
    for key in assets:  # <prefix>:assets:<kind>:<owner> holds that owner's names
        kind, owner = key.removeprefix(f"{prefix}:assets:").split(":", 1)
        allowed.append(f"{kind}s/{owner}/")
    return allowed


def storage_leftovers(root: Path, allowed: list[str]) -> tuple[list[str], list[str]]:
    """Return (orphan files, temp items) under a storage root."""
    temps = sorted(p.name for p in (root / ".tmp").iterdir()) if (root / ".tmp").is_dir() else []
    orphans = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith(".tmp/"):
            continue
        if not any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in allowed):
            orphans.append(rel)
    return orphans, temps


def _s(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_s(v) for v in value]
    if isinstance(value, dict):
        return {_s(k): _s(v) for k, v in value.items()}
    return value
