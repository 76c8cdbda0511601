"""`jayavatar models …` and `jayavatar doctor`: model files, and whether each engine can run.

The core environment stays light: whatever needs an engine's packages (torch, PyAV) is asked
of that engine's own Python environment in a child process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import redis

from engines import models as registry
from jayavatar.errors import JayAvatarError, one_line
from jayavatar.settings import Settings
from jayavatar.wsl import wsl_checks

#: Python environments by name: folder, and the distributions each must hold.
ENVS: dict[str, tuple[str, tuple[str, ...]]] = {
    "core": (".venv", ("arq", "redis", "discord.py", "click")),
    "voice": (".venvs/voice", ("piper-tts", "soundfile", "av")),
    "lipsync": (".venvs/lipsync", ("mediapipe", "av", "torch", "numpy")),
    "xtts": (".venvs/xtts", ("coqui-tts", "torch", "torchaudio", "transformers", "av")),
}

# Run inside an engine environment: versions, CUDA, and the codecs the renderer encodes with.
_PROBE = r"""
import importlib.metadata as md, importlib.util, json, sys
out = {"python": sys.version.split()[0], "packages": {}}
for name in sys.argv[1:]:
    try:
        out["packages"][name] = md.version(name)
    except md.PackageNotFoundError:
        out["packages"][name] = None
if importlib.util.find_spec("torch"):
    import torch
    out["cuda"] = bool(torch.cuda.is_available())
    out["cuda_name"] = torch.cuda.get_device_name(0) if out["cuda"] else ""
if importlib.util.find_spec("av"):
    import av
    found = []
    for codec in ("libx264", "h264_nvenc", "aac"):
        try:
            av.codec.Codec(codec, "w")
            found.append(codec)
        except Exception:
            pass
    out["codecs"] = found
print(json.dumps(out))
"""


def _settings(ctx: click.Context) -> Settings:
    """Return the entry point's Settings (ctx.obj), building them for a standalone group."""
    found = ctx.find_object(Settings)
    if found is None:
        found = Settings()
        ctx.obj = found
    return found


def _fail(exc: JayAvatarError) -> None:
    """Print an error on one line and exit with status 1."""
    click.echo(f"error: {one_line(exc)}", err=True)
    sys.exit(1)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Format rows as a plain aligned text table."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _human(size: int | None) -> str:
    """Format a byte count for people."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


@click.group("models")
def models() -> None:
    """List, download, import and verify model weights."""


@models.command("list")
@click.pass_context
def list_models(ctx: click.Context) -> None:
    """Show every known model, how much of it is in place, and its licence."""
    models_dir = _settings(ctx).models_dir
    rows = []
    for model in registry.MODELS.values():
        states = registry.check(models_dir, model.name, full=False)
        present = sum(s.state != "missing" for s in states)
        known = all(f.size for f in model.files)
        size = ("" if known else "≥ ") + _human(sum(f.size or f.min_size for f in model.files))
        ready = "ready" if all(s.ok for s in states) else "not ready"
        rows.append((model.name, model.engine, f"{present}/{len(states)} files", ready,
                     size, model.licence))  # fmt: skip
    click.echo(_table(rows, ("MODEL", "ENGINE", "PRESENT", "STATE", "SIZE", "LICENCE")))
    click.echo(f"\nmodels directory: {models_dir}")


@models.command()
@click.argument("name")
@click.option("--endpoint", help="Base URL of a mirror of the model hub.")
@click.pass_context
def pull(ctx: click.Context, name: str, endpoint: str | None) -> None:
    """Download a model's files from its official source and verify them."""
    models_dir = _settings(ctx).models_dir
    try:
        model = registry.get(name)
        click.echo(f"{model.name}: licensed under {model.licence}; see {model.licence_url}")
        results = registry.pull(models_dir, name, endpoint=endpoint, progress=_progress())
    except JayAvatarError as exc:
        _fail(exc)
        return
    click.echo(f"\n{name}: {len(results)} files in place under {models_dir}")


def _progress() -> registry.ByteProgress:
    """Return a download progress printer for stderr."""

    def show(done: int, total: int) -> None:
        share = f" {100 * done // total}%" if total else ""
        click.echo(f"\r  {_human(done)}{share}   ", nl=False, err=True)

    return show


@models.command("import")
@click.argument("name")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--link", is_flag=True, help="Hard-link instead of copying where possible.")
@click.pass_context
def import_model(ctx: click.Context, name: str, source: Path, link: bool) -> None:
    """Copy a model's files from a local folder (or a single file) and verify them."""
    models_dir = _settings(ctx).models_dir
    try:
        results = registry.import_files(models_dir, name, source, link=link)
    except JayAvatarError as exc:
        _fail(exc)
        return
    for status in results:
        click.echo(f"{status.file.path}: {status.state} ({status.detail})")


@models.command()
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True, help="Check presence and sizes only, no hashing.")
@click.pass_context
def verify(ctx: click.Context, names: tuple[str, ...], quick: bool) -> None:
    """Check files' presence, sizes, formats and sha256 (all models when none is named)."""
    models_dir = _settings(ctx).models_dir
    rows = []
    bad = False
    try:
        for name in names or tuple(registry.MODELS):
            model = registry.get(name)
            for status in registry.check(models_dir, name, full=not quick):
                fix = "" if status.ok else registry.fix_for(model)
                optional = "" if status.file.required else " (optional)"
                rows.append((status.file.path + optional, status.state, status.detail, fix))
                bad = bad or (not status.ok and bool(names))
    except JayAvatarError as exc:
        _fail(exc)
    click.echo(_table(rows, ("FILE", "STATE", "DETAIL", "FIX")))
    if bad:
        sys.exit(1)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    level: str  # ok, warn, fail
    detail: str
    fix: str = ""


def _probe_env(root: Path, env: str) -> tuple[dict[str, object] | None, str]:
    """Run the probe in an environment's interpreter; return its report or why it failed."""
    folder, packages = ENVS[env]
    python = root / folder / "bin" / "python"
    if not python.exists():
        return None, f"{folder} not built"
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE, *packages],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"probe failed: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"probe failed: {last}"
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report, ""


def _env_checks(root: Path, env: str, needed: bool) -> tuple[list[Check], dict[str, object]]:
    """Check one environment: built, packages present, known-bad versions absent."""
    folder, _ = ENVS[env]
    report, problem = _probe_env(root, env)
    build = f"make {folder}/.stamp" if env != "core" else "make envs"
    if report is None:
        return [Check(f"env {env}", "fail" if needed else "warn", problem, build)], {}
    packages = report.get("packages")
    assert isinstance(packages, dict)
    missing = [name for name, version in packages.items() if version is None]
    checks = [Check(f"env {env}", "ok", f"Python {report.get('python')}")]
    if missing:
        level = "fail" if needed else "warn"
        checks.append(Check(f"{env} packages", level, "missing " + ", ".join(missing), build))
    else:
        versions = ", ".join(f"{k} {v}" for k, v in packages.items())
        checks.append(Check(f"{env} packages", "ok", versions))
    transformers = str(packages.get("transformers") or "")
    if transformers and int(transformers.split(".")[0]) >= 5:
        checks.append(Check(f"{env} transformers", "fail" if needed else "warn",
                            f"transformers {transformers} breaks XTTS inference",
                            "pip install 'transformers>=4.57,<5' in .venvs/xtts"))  # fmt: skip
    return checks, report


def _device_check(env: str, report: dict[str, object], device: str) -> Check:
    """Report whether an environment's torch sees a GPU, against the configured device."""
    if "cuda" not in report:
        return Check(f"{env} device", "warn", "torch not importable")
    if report["cuda"]:
        return Check(f"{env} device", "ok", f"CUDA: {report.get('cuda_name')}")
    level = "fail" if device == "cuda" else "ok"
    fix = "install a CUDA build of torch, or set JAYAVATAR_DEVICE=cpu" if level == "fail" else ""
    return Check(f"{env} device", level, "CPU only (no CUDA)", fix)


def _codec_check(report: dict[str, object]) -> Check:
    """Check that PyAV can encode H.264 and AAC for the renderer."""
    codecs = report.get("codecs")
    if not isinstance(codecs, list):
        return Check("video codecs", "warn", "PyAV not importable in lipsync env", "make envs")
    missing = [c for c in ("libx264", "aac") if c not in codecs]
    if missing:
        fix = "reinstall PyAV from its wheel: pip install --force-reinstall av"
        return Check("video codecs", "fail", "PyAV lacks " + ", ".join(missing), fix)
    return Check("video codecs", "ok", "PyAV encodes " + ", ".join(codecs))


def _redis_check(url: str) -> Check:
    """Ping Redis with a short timeout."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        info: dict[str, object] = dict(client.info("server"))  # type: ignore[arg-type]
        client.close()
    except (redis.RedisError, OSError) as exc:
        return Check("redis", "fail", f"{url}: {one_line(exc)}",
                     "start redis-server, or set JAYAVATAR_REDIS_URL")  # fmt: skip
    return Check("redis", "ok", f"{url} (redis {info.get('redis_version', '?')})")


def _model_checks(models_dir: Path, wanted: set[str]) -> list[Check]:
    """Check each model's files (presence and size); a configured engine's are required."""
    checks = []
    for model in registry.MODELS.values():
        bad = [s for s in registry.check(models_dir, model.name, full=False) if not s.ok]
        needed = model.engine in wanted and not model.optional
        if not bad:
            checks.append(Check(f"model {model.name}", "ok", f"files in place ({model.engine})"))
            continue
        first = bad[0]
        detail = f"{first.file.path} {first.state}" + (f" ({first.detail})" if first.detail else "")
        level = "fail" if needed else "warn"
        checks.append(Check(f"model {model.name}", level, detail, registry.fix_for(model)))
    return checks


def run_doctor(settings: Settings, root: Path) -> list[Check]:
    """Run every check for the configured engines; unconfigured engines only warn."""
    voice_env = "xtts" if settings.voice_engine == "xtts" else "voice"
    wanted_envs = {"core", voice_env, "lipsync"}
    checks: list[Check] = []
    reports: dict[str, dict[str, object]] = {}
    for env in ENVS:
        env_checks, reports[env] = _env_checks(root, env, env in wanted_envs)
        checks.extend(env_checks)
    checks.append(_redis_check(settings.redis_url))
    checks.append(_codec_check(reports.get("lipsync", {})))
    ffmpeg = shutil.which("ffmpeg")
    checks.append(
        Check("ffmpeg binary", "ok", ffmpeg or "absent (not needed: PyAV bundles FFmpeg)")
    )
    for env in ("lipsync", "xtts"):
        if reports.get(env):
            needed = env in wanted_envs
            check = _device_check(env, reports[env], settings.device if needed else "auto")
            checks.append(check)
    checks.extend(
        _model_checks(settings.models_dir, {settings.voice_engine, settings.lipsync_engine})
    )
    checks.extend(Check(*row) for row in wsl_checks(root))
    return checks


@click.command()
@click.option("--root", type=click.Path(path_type=Path), default=Path("."),
              help="Project folder holding .venv and .venvs.")  # fmt: skip
@click.pass_context
def doctor(ctx: click.Context, root: Path) -> None:
    """Check environments, packages, Redis, codecs, CUDA and model files; print fixes."""
    settings = _settings(ctx)
    checks = run_doctor(settings, root)
    rows = [(c.name, c.level.upper(), c.detail, c.fix) for c in checks]
    click.echo(_table(rows, ("CHECK", "STATUS", "DETAIL", "FIX")))
    engines = f"voice engine {settings.voice_engine}, lip-sync engine {settings.lipsync_engine}"
    failed = [c for c in checks if c.level == "fail"]
    click.echo(f"\n{engines}: " + (f"{len(failed)} problem(s)" if failed else "ready"))
    if failed:
        sys.exit(1)
