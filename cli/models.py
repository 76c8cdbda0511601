"""`jayavatar models …` and `jayavatar doctor`: model files, and whether each engine can run.

The core environment stays light: whatever needs an engine's packages (torch, PyAV) is asked
of that engine's own Python environment in a child process.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import click
import redis

from cli import progress
from cli.wsl import wsl_checks
from engines import models as registry
from jayavatar import catalog
from jayavatar.catalog import ENVS
from jayavatar.errors import JayAvatarError, one_line
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
    for model in catalog.models().values():
        states = registry.check(models_dir, model.name, full=False)
        present = sum(s.state != "missing" for s in states)
        known = all(f.size for f in model.files)
        size = ("" if known else "≥ ") + _human(sum(f.size or f.min_size for f in model.files))
        ready = "ready" if all(s.ok for s in states) else "not ready"
        engine = catalog.owner(model.name).name
        rows.append((model.name, engine, f"{present}/{len(states)} files", ready,
                     size, model.licence))  # fmt: skip
    click.echo(_table(rows, ("MODEL", "ENGINE", "PRESENT", "STATE", "SIZE", "LICENCE")))
    click.echo(f"\nmodels directory: {models_dir}")


@models.command()
@click.argument("name")
@click.option("--endpoint", help="Base URL of a mirror of the model hub.")
@progress.quiet_option
@click.pass_context
def pull(ctx: click.Context, name: str, endpoint: str | None, quiet: bool) -> None:
    """Download a model's files from its official source and verify them."""
    models_dir = _settings(ctx).models_dir
    try:
        model = registry.get(name)
        click.echo(f"{model.name}: licensed under {model.licence}; see {model.licence_url}")
        with progress.Board(progress.choose_mode(quiet)) as board:
            shown = _progress(board.line(name))
            results = registry.pull(models_dir, name, endpoint=endpoint, progress=shown)
    except JayAvatarError as exc:
        _fail(exc)
        return
    click.echo(f"{name}: {len(results)} files in place under {models_dir}")


def _progress(line: progress.Line) -> registry.ByteProgress:
    """Return a download callback that shows bytes, share, elapsed time and ETA on `line`."""
    files = {"count": 0, "last": -1}

    def show(done: int, total: int) -> None:
        if done < files["last"] or files["last"] < 0:  # the next file's first block
            files["count"] += 1
        files["last"] = done
        size = f"{_human(done)} of {_human(total)}" if total else _human(done)
        line.show(f"downloading file {files['count']}", done / total if total else None, size)

    return show


def engine_python(root: Path, model_name: str) -> Path | None:
    """Return the interpreter of the environment that loads `model_name`, if it is here.

    That is the environment's folder under `root`, else this interpreter when it has the
    environment's packages (as in that environment's container image).
    """
    env = ENVS[catalog.owner(model_name).env]
    python = root / env.folder / "bin" / "python"
    if python.exists():
        return python
    try:
        for package in env.packages:
            importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(sys.executable)


ROOT_OPTION = click.option(
    "--root", type=click.Path(path_type=Path), default=Path("."),
    help="Project folder holding the engine environments (.venvs).",
)  # fmt: skip


@models.command("import")
@click.argument("name")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--link", is_flag=True, help="Hard-link instead of copying where possible.")
@ROOT_OPTION
@progress.quiet_option
@click.pass_context
def import_model(
    ctx: click.Context, name: str, source: Path, link: bool, root: Path, quiet: bool
) -> None:
    """Copy a model's files from a local folder (or a single file), verify and load them."""
    models_dir = _settings(ctx).models_dir
    try:
        python = engine_python(root, registry.get(name).name)
        with progress.Board(progress.choose_mode(quiet)) as board:
            line = board.line(name)

            def on_file(path: str, index: int, count: int) -> None:
                line.show("copying and verifying", index / count, f"{path} ({index + 1}/{count})")

            results = registry.import_files(
                models_dir, name, source, link=link, python=python, on_file=on_file
            )
            line.finish("done", ok=True)
    except JayAvatarError as exc:
        _fail(exc)
        return
    for status in results:
        click.echo(f"{status.file.path}: {status.state} ({status.detail})")
    if python is None and registry.get(name).check:
        env = catalog.owner(name).env
        click.echo(f"not loaded: the {env} environment is not here; the worker loads it at start")


@models.command()
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True, help="Check presence and sizes only, no hashing.")
@ROOT_OPTION
@click.pass_context
def verify(ctx: click.Context, names: tuple[str, ...], quick: bool, root: Path) -> None:
    """Check files' presence, sizes, formats and sha256, and load each model strictly.

    Checks all models when none is named; `--quick` skips hashing and loading.
    """
    models_dir = _settings(ctx).models_dir
    rows = []
    bad = False
    try:
        for name in names or tuple(catalog.models()):
            model_rows, model_bad = _verify_model(models_dir, registry.get(name), quick, root)
            rows.extend(model_rows)
            bad = bad or (model_bad and bool(names))
    except JayAvatarError as exc:
        _fail(exc)
    click.echo(_table(rows, ("FILE", "STATE", "DETAIL", "FIX")))
    if bad:
        sys.exit(1)


def _verify_model(
    models_dir: Path, model: catalog.Model, quick: bool, root: Path
) -> tuple[list[tuple[str, str, str, str]], bool]:
    """Return the verify rows of one model, and whether it is not usable."""
    rows = []
    statuses = registry.check(models_dir, model.name, full=not quick)
    for status in statuses:
        fix = "" if status.ok else registry.fix_for(model)
        optional = "" if status.file.required else " (optional)"
        rows.append((status.file.path + optional, status.state, status.detail, fix))
    bad = not all(s.ok for s in statuses)
    present = all(s.state != "missing" for s in statuses if s.file.required)
    if quick or bad or not present or model.check is None:
        return rows, bad
    label = f"{model.name} (load)"
    python = engine_python(root, model.name)
    if python is None:
        env = catalog.owner(model.name).env
        rows.append((label, "unchecked", f"the {env} environment is not here", ""))
        return rows, bad
    try:
        loaded = registry.load_check(models_dir, model, python)
    except JayAvatarError as exc:
        rows.append((label, "broken", one_line(exc), registry.fix_for(model)))
        return rows, True
    rows.append((label, "ok", loaded.detail, ""))
    return rows, bad


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
