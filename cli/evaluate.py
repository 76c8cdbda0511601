"""`jayavatar eval`: a render's quality report (lip sync, voice, words, background, artifacts).

The measures need mediapipe, PyAV, torch and the speech models, which only the lip-sync
environment has, while `jayavatar` usually runs from the light core environment. So the
command resolves its inputs here (a request record from Redis, voice and avatar folders from
storage), then runs ``python -m engines.quality.report`` with the lip-sync environment's Python (or
this one, if it has those packages), reads the JSON it writes, and prints a table.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jayavatar import errors, ids
from jayavatar.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CLI_USER = ids.LOCAL
#: Packages the report imports; an interpreter with all of them can run it itself.
NEEDS = ("mediapipe", "av", "torch", "faster_whisper", "piper", "webrtcvad")
PARTS = (
    ("sync", "lip sync"),
    ("voice", "voice likeness"),
    ("intelligibility", "intelligibility"),
    ("authenticity", "authenticity"),
    ("artifacts", "artifacts"),
    ("mouth", "mouth shapes"),
)


@dataclass(frozen=True)
class EvalInputs:
    """Everything one evaluation needs, as local paths."""

    render: Path
    avatar_dir: Path
    voice_dir: Path
    text: str
    language: str


@click.command("eval")
@click.argument("render", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--request", "request_id", help="Take voice, avatar, script and render from it.")
@click.option("--voice", help="Voice: your voice's name, owner/name, or a voice folder.")
@click.option("--avatar", help="Avatar: your avatar's name, owner/name, or an avatar folder.")
@click.option("--text", help="The script the render speaks.")
@click.option("--language", default=None, help="Language code (default: the request's, or en).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the report as a PNG: curves, mouth crops, voice likeness, checks.",
)
@click.option("--strict", is_flag=True, help="Exit with code 3 when anything is flagged.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds for the measurement.")
@click.pass_obj
def eval_cmd(
    settings: Settings,
    render: Path | None,
    request_id: str | None,
    voice: str | None,
    avatar: str | None,
    text: str | None,
    language: str | None,
    json_out: Path | None,
    plot: Path | None,
    strict: bool,
    timeout: float,
) -> None:
    """Measure RENDER (or a request's render): lip sync, voice likeness, words, background."""
    inputs = resolve_inputs(settings, render, request_id, voice, avatar, text, language)
    report = run_report(inputs, timeout, plot)
    click.echo(format_table(report, inputs.render.name))
    if plot is not None:
        click.echo(f"picture: {plot}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_out.with_name(f".{json_out.name}.part")
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(json_out)
    if strict and report["flags"]:
        sys.exit(3)


def resolve_inputs(
    settings: Settings,
    render: Path | None,
    request_id: str | None,
    voice: str | None,
    avatar: str | None,
    text: str | None,
    language: str | None,
) -> EvalInputs:
    """Turn the command's options into local paths; a request fills in what is not given."""
    from storage import build_storage

    storage = build_storage(settings)
    if request_id is not None:
        req = asyncio.run(_fetch_request(settings, request_id))
        if req.kind != "render":
            raise errors.BadInput(f"request {req.id} is a {req.kind}, not a render")
        voice, avatar = voice or req.voice, avatar or req.avatar
        text, language = text or req.text, language or req.language
        if render is None:
            if req.state != "done" or not req.output_key:
                raise errors.BadInput(f"request {req.id} has no render yet (it is {req.state})")
            render = storage.local_path(req.output_key)
    if render is None or not voice or not avatar or not text:
        raise errors.BadInput(
            "give --request ID, or a render file with --voice, --avatar and --text"
        )
    if not render.is_file():
        raise errors.NotFound(f"no render file at {render}")
    return EvalInputs(
        render=render,
        avatar_dir=_asset_dir(storage, "avatar", avatar),
        voice_dir=_asset_dir(storage, "voice", voice),
        text=text,
        language=language or "en",
    )


async def _fetch_request(settings: Settings, request_id: str) -> Any:
    from jobs.client import JobClient

    client = await JobClient.connect(settings)
    try:
        return await client.get(request_id)
    finally:
        await client.close()


def _asset_dir(storage: Any, kind: str, ref: str) -> Path:
    """A voice or avatar folder: given as a folder, as owner/name, or as one of your names."""
    from storage.keys import avatar_prefix, voice_prefix

    if Path(ref).is_dir():
        return Path(ref)
    owner, name = ref.split("/", 1) if "/" in ref else (CLI_USER, ref)
    prefix = (voice_prefix if kind == "voice" else avatar_prefix)(owner, name)
    folder: Path = storage.local_path(prefix)
    if not folder.is_dir():
        raise errors.NotFound(f"no {kind} {ref!r}")
    return folder


def quality_python() -> Path:
    """The Python that can run the report: this one if it has the packages, else lip-sync's."""
    if all(importlib.util.find_spec(name) is not None for name in NEEDS):
        return Path(sys.executable)
    path = ROOT / ".venvs" / "lipsync" / "bin" / "python"
    if not path.exists():
        raise errors.ModelMissing(
            "the quality report runs in the lip-sync environment, which is missing; run `make envs`"
        )
    return path


def run_report(inputs: EvalInputs, timeout: float, plot: Path | None = None) -> dict[str, Any]:
    """Run `engines.quality.report` in a child process; return its report (drawn to `plot`)."""
    with tempfile.TemporaryDirectory(prefix="jayavatar-eval-") as tmp:
        out = Path(tmp) / "report.json"
        cmd = [
            str(quality_python()),
            "-m",
            "engines.quality.report",
            str(inputs.render.resolve()),
            "--avatar",
            str(inputs.avatar_dir.resolve()),
            "--voice",
            str(inputs.voice_dir.resolve()),
            "--text",
            inputs.text,
            "--language",
            inputs.language,
            "--json",
            str(out),
            *(["--plot", str(plot.resolve())] if plot is not None else []),
        ]
        # mediapipe and TensorFlow Lite log to stderr at start-up; keep only real warnings.
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise errors.TransientError(f"the quality report took over {timeout:.0f} s") from None
        report = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None
    if isinstance(report, dict) and "error" in report:
        raise _rebuild(report["error"])
    if proc.returncode != 0 or not isinstance(report, dict):
        tail = proc.stderr.strip().splitlines()[-3:]
        click.echo("\n".join(tail), err=True)
        raise errors.EngineError(f"the quality report failed (exit code {proc.returncode})")
    return report


def _rebuild(error: dict[str, str]) -> errors.JayAvatarError:
    """The child's error, as the same class of the error tree."""
    cls = getattr(errors, str(error.get("kind")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.JayAvatarError)):
        cls = errors.EngineError
    return cls(str(error.get("message", "")))


def format_table(report: dict[str, Any], name: str) -> str:
    """The report as a fixed-width table, its summary line and its flags."""
    rows = [
        (label, _result(part, report[part]), report["checks"][part])
        for part, label in PARTS
        if part in report  # reports from before the mouth checks have no "mouth"
    ]
    width = max(len(r[1]) for r in rows)
    head = (
        f"Quality report of {name}: {report['frames']} frames at {report['fps']:g} fps, "
        f"measured in {report['seconds']:.1f} s"
    )
    lines = [head, "", f"  {'check':16} {'result':{width}}  verdict"]
    lines += [f"  {label:16} {result:{width}}  {verdict}" for label, result, verdict in rows]
    lines += ["", f"summary: {report['summary']}"]
    lines += [f"flagged: {flag}" for flag in report["flags"]] or ["flagged: nothing"]
    return "\n".join(lines)


def _result(part: str, data: dict[str, Any]) -> str:
    """One table cell: the part's main numbers in words."""
    if not data.get("measured", True):
        return str(data.get("reason", "not measured"))
    if part == "sync":
        return (
            f"correlation {data['corr']:.2f} at lag {data['lag_frames']:+d} frames, "
            f"aperture spread {data['aperture_spread']:.3f}"
        )
    if part == "voice":
        stock = data["stock_similarity"]
        return f"{data['similarity']:.2f} to the reference (stock voice {stock:.2f})"
    if part == "intelligibility":
        return f"WER {data['wer']:.2f}: {_clip(data['transcript'], 48)!r}"
    if part == "mouth":
        return _mouth_result(data)
    if part == "authenticity":
        lost = data["face_lost_frames"]
        faces = "no face lost" if not lost else f"face lost in {lost} frames"
        changed, checked = data["changed_pixels"], data["checked_pixels"]
        return f"{changed:,} of {checked:,} background pixels changed; {faces}"
    return (
        f"{data['blurry_frames']} of {data['face_frames']} frames blurry, "
        f"flicker {data['flicker_ratio']:.2f} (sharpness x{data['sharpness_ratio'] or 0:.2f})"
    )


def _mouth_result(data: dict[str, Any]) -> str:
    """The mouth cell: closures reached, rounding, rest in pauses."""
    rate, ratio, rest = data["closure_rate"], data["round_ratio"], data["rest_in_pauses"]
    closes = "no p/b/m" if rate is None else f"lips close at {100 * rate:.0f}% of p/b/m"
    rounds = "" if ratio is None else f", oo/ee width {ratio:.2f}"
    rests = "" if rest is None else f", rest in {100 * rest:.0f}% of pauses"
    return f"{closes}{rounds}{rests}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
