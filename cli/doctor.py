"""`jayavatar doctor`: whether each engine can run here: its Python, device, codecs, models, Redis.

The core environment stays light: whatever needs an engine's packages (torch, PyAV) is asked
of that engine's own Python environment in a child process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import redis

from cli.models import _settings, _table
from cli.wsl import wsl_checks
from engines import models as registry
from jayavatar import catalog
from jayavatar.catalog import ENVS
from jayavatar.errors import one_line
from jayavatar.settings import Settings

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


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    level: str  # ok, warn, fail
    detail: str
    fix: str = ""


def _probe_env(root: Path, env: str) -> tuple[dict[str, object] | None, str]:
    """Run the probe in an environment's interpreter; return its report or why it failed."""
    folder, packages = ENVS[env].folder, ENVS[env].packages
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
    folder = ENVS[env].folder
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
    for model in catalog.models().values():
        engine = catalog.owner(model.name).name
        bad = [s for s in registry.check(models_dir, model.name, full=False) if not s.ok]
        needed = engine in wanted and not model.optional
        if not bad:
            checks.append(Check(f"model {model.name}", "ok", f"files in place ({engine})"))
            continue
        first = bad[0]
        detail = f"{first.file.path} {first.state}" + (f" ({first.detail})" if first.detail else "")
        level = "fail" if needed else "warn"
        checks.append(Check(f"model {model.name}", level, detail, registry.fix_for(model)))
    return checks


def run_doctor(settings: Settings, root: Path) -> list[Check]:
    """Run every check for the configured engines; unconfigured engines only warn."""
    engines = (settings.voice_engine, settings.lipsync_engine)
    wanted_envs = {"core", *(catalog.engine(name).env for name in engines)}
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
    gpu_envs = {row.env: None for row in catalog.ENGINES.values() if "CUDA" in row.device}
    for env in gpu_envs:
        if reports.get(env):
            needed = env in wanted_envs
            check = _device_check(env, reports[env], settings.device if needed else "auto")
            checks.append(check)
    checks.extend(_model_checks(settings.models_dir, set(engines)))
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
