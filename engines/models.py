"""The model files JayAvatar knows: where they come from, how big they are, and how to check them.

Standard library only, so the core CLI can list, fetch, import and verify weights without the
engines' packages. Nothing here runs at import; workers call `require` once at start-up and
never download anything themselves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jayavatar.errors import BadInput, ModelMissing, NotFound

HUB = "https://huggingface.co"
CPML = "Coqui Public Model License 1.0.0 (non-commercial use only)"
CPML_URL = "https://coqui.ai/cpml"
WAV2LIP_LICENCE = "Wav2Lip licence: non-commercial research use only (trained on LRS2)"

#: Progress callback for downloads: (bytes done, bytes expected or 0).
ByteProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelFile:
    """One file of a model, with the facts that identify the official release."""

    path: str  # relative to the models directory
    url: str | None  # official download; None where the source has no direct link
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None  # where only the name-embedded prefix is published
    min_size: int = 1
    required: bool = True  # False for training-only files


@dataclass(frozen=True)
class Model:
    """A set of files that an engine loads together."""

    name: str
    engine: str
    licence: str
    licence_url: str
    files: tuple[ModelFile, ...]
    how_to_get: str
    optional: bool = False  # an alternative exists, so its engine can run without it


def _xtts_url(name: str) -> str:
    """Return the hub path of an XTTS v2 file; `pull` may swap the hub for a mirror."""
    return f"{HUB}/coqui/XTTS-v2/resolve/main/{name}"


# Sizes and digests of the XTTS v2.0.3 release files as published on the hub.
MODELS: dict[str, Model] = {
    "xtts_v2": Model(
        name="xtts_v2",
        engine="xtts",
        licence=CPML,
        licence_url=CPML_URL,
        how_to_get="jayavatar models pull xtts_v2",
        files=(
            ModelFile("xtts_v2/config.json", _xtts_url("config.json"), 4368,
                      "ef262b1454dd2a77e1461b0b2cd53e19b8a7624cc131b837d36df67356bc75e8"),
            ModelFile("xtts_v2/model.pth", _xtts_url("model.pth"), 1867929118,
                      "c7ea20001c6a0a841c77e252d8409f6a74fb423e79b3206a0771ba5989776187"),
            ModelFile("xtts_v2/vocab.json", _xtts_url("vocab.json"), 361219,
                      "928260878a59da8a72a2a5b7687fea29d5106137669d90945430fe17e415304a"),
            ModelFile("xtts_v2/speakers_xtts.pth", _xtts_url("speakers_xtts.pth"), 7754818,
                      "f0f6137c19a4eab0cbbe4c99b5babacf68b1746e50da90807708c10e645b943b",
                      required=False),
            ModelFile("xtts_v2/dvae.pth", _xtts_url("dvae.pth"), 210514388,
                      "b29bc227d410d4991e0a8c09b858f77415013eeb9fba9650258e96095557d97a",
                      required=False),
            ModelFile("xtts_v2/mel_stats.pth", _xtts_url("mel_stats.pth"), 1067,
                      "1f69422a8a8f344c4fca2f0c6b8d41d2151d6615b7321e48e6bb15ae949b119c",
                      required=False),
        ),
    ),
    # The official Wav2Lip checkpoints sit in a sign-in folder linked from the project's
    # README, with no published digest: they can only be imported, and checked for shape.
    "wav2lip": Model(
        name="wav2lip",
        engine="wav2lip",
        licence=WAV2LIP_LICENCE,
        licence_url="https://github.com/Rudrabha/Wav2Lip#license-and-citation",
        how_to_get="download wav2lip.pth from the Wav2Lip README, then "
        "`jayavatar models import wav2lip FILE`",
        files=(ModelFile("wav2lip/wav2lip.pth", None, min_size=140_000_000),),
        optional=True,  # wav2lip_gan is the default checkpoint
    ),
    "wav2lip_gan": Model(
        name="wav2lip_gan",
        engine="wav2lip",
        licence=WAV2LIP_LICENCE,
        licence_url="https://github.com/Rudrabha/Wav2Lip#license-and-citation",
        how_to_get="download wav2lip_gan.pth from the Wav2Lip README, then "
        "`jayavatar models import wav2lip_gan FILE`",
        files=(ModelFile("wav2lip/wav2lip_gan.pth", None, min_size=140_000_000),),
    ),
    # S3FD face detector as packaged by the face-alignment project; its name carries the
    # first hex digits of its sha256, the torch hub convention.
    "s3fd": Model(
        name="s3fd",
        engine="wav2lip",
        licence="BSD-3-Clause (face-alignment project)",
        licence_url="https://github.com/1adrianb/face-alignment/blob/master/LICENSE",
        how_to_get="jayavatar models pull s3fd",
        files=(
            ModelFile("s3fd/s3fd.pth",
                      "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
                      sha256_prefix="619a316812", min_size=80_000_000),
        ),
        optional=True,  # the engine may track faces with another detector
    ),
}  # fmt: skip


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
    try:
        return MODELS[name]
    except KeyError:
        raise NotFound(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


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
    on_file: Callable[[str, int, int], None] | None = None,
) -> list[FileStatus]:
    """Copy (or hard-link) a model's files from a local file or folder, then verify them.

    A folder is searched for each file by its name; a single file fits a one-file model.
    Files that fail verification are removed again and reported by ModelMissing.
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
    return placed


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
