"""The model files JayAvatar knows: where they come from, how big they are, and how to check them.

Standard library only, so the core CLI can list, fetch, import and verify weights without the
engines' packages. Nothing here runs at import; workers call `require` once at start-up and
never download anything themselves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jayavatar import catalog
from jayavatar.catalog import HUB, Model, ModelFile
from jayavatar.errors import BadInput, ModelMissing, NotFound

#: Progress callback for downloads: (bytes done, bytes expected or 0).
ByteProgress = Callable[[int, int], None]


#: Model arguments in the XTTS v2 release's config.json; tests and benchmarks build from them.
XTTS_RELEASE_ARGS: dict[str, object] = {
    "gpt_batch_size": 1, "enable_redaction": False, "kv_cache": True,
    "gpt_max_audio_tokens": 605, "gpt_max_text_tokens": 402, "gpt_max_prompt_tokens": 70,
    "gpt_layers": 30, "gpt_n_model_channels": 1024, "gpt_n_heads": 16,
    "gpt_number_text_tokens": 6681, "gpt_num_audio_tokens": 1026,
    "gpt_start_audio_token": 1024, "gpt_stop_audio_token": 1025, "gpt_code_stride_len": 1024,
    "gpt_use_masking_gt_prompt_approach": True, "gpt_use_perceiver_resampler": True,
    "input_sample_rate": 22050, "output_sample_rate": 24000, "output_hop_length": 256,
    "decoder_input_dim": 1024, "d_vector_dim": 512, "cond_d_vector_in_each_upsampling_layer": True,
    "duration_const": 102400,
}  # fmt: skip
XTTS_RELEASE_INFERENCE: dict[str, object] = {
    "temperature": 0.75, "length_penalty": 1.0, "repetition_penalty": 5.0, "top_k": 50,
    "top_p": 0.85, "gpt_cond_len": 30, "gpt_cond_chunk_len": 4, "max_ref_len": 30,
}  # fmt: skip


@dataclass(frozen=True)
class FileStatus:
    """What `check` found for one file."""

    file: ModelFile
    state: str  # ok, missing, wrong size, bad hash, unreadable, unchecked
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True where the file can be used (or is optional and absent)."""
        return self.state in ("ok", "unchecked") or (
            self.state == "missing" and not self.file.required
        )


def get(name: str) -> Model:
    """Return the model called `name`, or raise NotFound listing the known ones."""
    known = catalog.models()
    try:
        return known[name]
    except KeyError:
        raise NotFound(f"unknown model {name!r}; known: {', '.join(known)}") from None


def fix_for(model: Model) -> str:
    """Return the command (or steps) that puts this model's files in place."""
    return model.how_to_get


def check_file(models_dir: Path, file: ModelFile, *, full: bool = True) -> FileStatus:
    """Check one file's presence and size, and with `full` its digest and format."""
    path = models_dir / file.path
    if not path.is_file():
        return FileStatus(file, "missing")
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        return FileStatus(file, "wrong size", f"{size} bytes, expected {file.size}")
    if size < file.min_size:
        return FileStatus(file, "wrong size", f"{size} bytes, expected at least {file.min_size}")
    if not full:
        return FileStatus(file, "ok", "size only")
    problem = format_problem(path)
    if problem:
        return FileStatus(file, "unreadable", problem)
    if file.sha256 or file.sha256_prefix:
        digest = sha256_of(path)
        expected = file.sha256 or file.sha256_prefix or ""
        if not digest.startswith(expected):
            return FileStatus(file, "bad hash", f"sha256 {digest[:16]}…, expected {expected[:16]}…")
        return FileStatus(file, "ok", "sha256 matches")
    return FileStatus(file, "unchecked", "no published digest; format looks right")


def check(models_dir: Path, name: str, *, full: bool = True) -> list[FileStatus]:
    """Check every file of a model."""
    return [check_file(models_dir, f, full=full) for f in get(name).files]


def require(models_dir: Path, name: str) -> Path:
    """Return the model's folder, or raise ModelMissing naming the first absent file and the fix.

    Checks presence only, so a worker starts fast and a fine-tuned model of the same layout
    loads too; the engine maps load failures to ModelMissing, and `verify` checks the release.
    """
    model = get(name)
    for file in model.files:
        path = models_dir / file.path
        if file.required and (not path.is_file() or path.stat().st_size == 0):
            state = "empty" if path.is_file() else "missing"
            raise ModelMissing(
                f"model file {file.path} is {state} under {models_dir}; fix: {fix_for(model)}"
            )
    return models_dir / model.files[0].path.split("/")[0]


def load_error(exc: BaseException) -> str:
    """Say in a few words why torch could not read a checkpoint.

    torch's own text for a file that is not plain tensors suggests loading it unsafely;
    that is never the fix for a model file, so it is replaced.
    """
    text = " ".join(str(exc).split())
    if "Weights only load failed" in text:
        return "not a checkpoint of plain tensors (damaged, or not the model)"
    return text if len(text) <= 160 else text[:160] + "…"


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def format_problem(path: Path) -> str:
    """Return why a file cannot be what its name says (JSON, torch checkpoint), or ""."""
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return f"not valid JSON: {exc}"
        return ""
    if path.suffix in (".pth", ".pt"):
        return _torch_file_problem(path)
    return ""


def _torch_file_problem(path: Path) -> str:
    """Check the container of a torch checkpoint without torch: zip with a pickle, or a pickle."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as exc:
            return f"damaged archive: {exc}"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return ""
        return "zip archive without data.pkl: not a torch checkpoint"
    with path.open("rb") as handle:
        head = handle.read(2)
    # Checkpoints from torch < 1.6 are plain pickles (protocol 2 opcode first).
    return "" if head == b"\x80\x02" else "neither a torch zip checkpoint nor a legacy pickle"


def pull(
    models_dir: Path,
    name: str,
    *,
    endpoint: str | None = None,
    progress: ByteProgress | None = None,
    timeout_s: float = 30.0,
) -> list[FileStatus]:
    """Download a model's missing or bad files from its official source, verifying each.

    `endpoint` replaces the hub's base URL (a mirror). Raises ModelMissing with the URL and
    the reason when a download fails, and for models with no direct download.
    """
    model = get(name)
    results = []
    for status in check(models_dir, name):
        if status.state in ("ok", "unchecked"):
            results.append(status)
            continue
        file = status.file
        if file.url is None:
            raise ModelMissing(f"{file.path} has no direct download; {model.how_to_get}")
        url = file.url.replace(HUB, endpoint.rstrip("/"), 1) if endpoint else file.url
        _download(url, models_dir / file.path, progress, timeout_s)
        results.append(_verified_or_removed(models_dir, file, model))
    return results


def _download(url: str, dest: Path, progress: ByteProgress | None, timeout_s: float) -> None:
    """Stream a URL into `dest` through a .part file that is renamed only when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "jayavatar-models"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise ModelMissing(
            f"cannot download {url} ({reason}); fetch {dest.name} elsewhere and run "
            f"`jayavatar models import`"
        ) from exc
    part.replace(dest)


def _verified_or_removed(models_dir: Path, file: ModelFile, model: Model) -> FileStatus:
    """Verify a freshly placed file; remove it and raise ModelMissing when it is wrong."""
    status = check_file(models_dir, file)
    if status.state in ("ok", "unchecked"):
        return status
    (models_dir / file.path).unlink(missing_ok=True)
    raise ModelMissing(f"{file.path} is {status.state} ({status.detail}); fix: {fix_for(model)}")


def import_files(
    models_dir: Path,
    name: str,
    source: Path,
    *,
    link: bool = False,
    python: Path | None = None,
    on_file: Callable[[str, int, int], None] | None = None,
) -> list[FileStatus]:
    """Copy (or hard-link) a model's files from a local file or folder, then verify them.

    A folder is searched for each file by its name; a single file fits a one-file model.
    With `python` (the engine environment's interpreter) the model is then loaded strictly
    there, as a worker would. Files that fail are removed again and reported by ModelMissing.
    `on_file(path, index, count)` is told before each file is looked for, copied and hashed.
    """
    model = get(name)
    if not source.exists():
        raise BadInput(f"{source} does not exist")
    placed = []
    for index, file in enumerate(model.files):
        if on_file is not None:
            on_file(file.path, index, len(model.files))
        found = _find_source(source, file, len(model.files))
        if found is None:
            if file.required:
                raise BadInput(f"{Path(file.path).name} not found in {source}")
            continue
        _place(found, models_dir / file.path, link)
        placed.append(_verified_or_removed(models_dir, file, model))
    if python is not None and model.check is not None:
        try:
            placed.append(load_check(models_dir, model, python))
        except ModelMissing:
            for status in placed:
                (models_dir / status.file.path).unlink(missing_ok=True)
            raise
    return placed


def load_check(models_dir: Path, model: Model, python: Path) -> FileStatus:
    """Load `model` strictly with `python` (its engine environment); raise ModelMissing if broken.

    Returns the status of the model's first file, with what the loader checked.
    """
    assert model.check is not None
    path, fix = models_dir / model.files[0].path, f"; fix: {fix_for(model)}"
    command = [str(python), "-m", "engines.model_check", model.check, str(path), fix]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelMissing(f"cannot load {model.name} with {python}: {exc}") from exc
    try:
        verdict = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelMissing(f"cannot load {model.name} with {python}: {last}") from None
    if not verdict.get("ok"):
        raise ModelMissing(str(verdict.get("detail")))
    return FileStatus(model.files[0], "ok", str(verdict.get("detail")))


def _find_source(source: Path, file: ModelFile, count: int) -> Path | None:
    """Find the file to import for `file` inside `source` (or `source` itself for one file)."""
    name = Path(file.path).name
    if source.is_file():
        return source if count == 1 or source.name == name else None
    for candidate in (source / name, source / file.path):
        if candidate.is_file():
            return candidate
    return next(iter(sorted(source.rglob(name))), None)


def _place(found: Path, dest: Path, link: bool) -> None:
    """Put one file in place, atomically, as a hard link when asked and possible."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if found.resolve() == dest.resolve():
        return
    part = dest.with_name(dest.name + ".part")
    part.unlink(missing_ok=True)
    if link:
        try:
            part.hardlink_to(found)
        except OSError:  # another file system: copy instead
            shutil.copyfile(found, part)
    else:
        shutil.copyfile(found, part)
    part.replace(dest)
