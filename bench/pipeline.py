"""Benchmark: the demo end to end on this machine's CPU, through the real queues.

Prints one table: per-stage seconds (voice, lip-sync phases, queue waits), wall time from
submit to finished MP4 for a ~5 s clip, and peak RSS of each worker (its engine process included).
Run with `make bench`; the target is a 5 s clip end to end in at most 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from cli.demo import DEMO_TEXT, run_demo
from jayavatar.settings import Settings

ORDER = [
    ("render_wall_s", "submit → MP4 ready (wall)"),
    ("voice_wait_s", "queue wait, voice"),
    ("synthesize_s", "voice: synthesis + matching"),
    ("voice_stage_s", "voice stage total"),
    ("lipsync_wait_s", "queue wait, lip-sync"),
    ("render_s", "lip-sync: render call"),
    ("lipsync_stage_s", "lip-sync stage total"),
]


def main() -> None:
    """Run the demo and print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--text", default=DEMO_TEXT)
    parser.add_argument("-o", "--output", type=Path, default=Path("out/bench.mp4"))
    args = parser.parse_args()
    report = run_demo(Settings(), args.output, args.text)
    print(
        f"\nJayAvatar pipeline benchmark — {platform.processor() or platform.machine()}, "
        f"{_cores()} cores, offline engines (piper + landmark)\n"
    )
    print("| measure | value |")
    print("|---|---|")
    for key, label in ORDER:
        if key in report:
            print(f"| {label} | {report[key]:.2f} s |")
    for key in sorted(k for k in report if k.startswith("lipsync_seconds_")):
        print(f"| lip-sync phase: {key.removeprefix('lipsync_seconds_')} | {report[key]:.2f} s |")
    for key in sorted(k for k in report if k.endswith("_peak_rss_mib")):
        print(f"| peak RSS {key.removesuffix('_peak_rss_mib')} worker | {report[key]:.0f} MiB |")
    print(f"| speech (clip) length | {report.get('lipsync_audio_s', float('nan')):.2f} s |")
    print(f"| frames rendered | {report.get('lipsync_frames', 0)} |")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
