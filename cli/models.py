"""`jayavatar models …`: list, pull, import and verify model files (doctor: `cli.doctor`).

The core environment stays light: whatever needs an engine's packages (torch, PyAV) is asked
of that engine's own Python environment in a child process.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from cli import progress
from engines import models as registry
from jayavatar import catalog
from jayavatar.catalog import ENVS
from jayavatar.errors import JayAvatarError, one_line
from jayavatar.settings import Settings


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
