"""`jayavatar models list|pull|import|verify` and `jayavatar doctor`, against local files only."""

from __future__ import annotations

import hashlib
import http.server
import json
import pickle
import stat
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.doctor import doctor, run_doctor
from cli.models import models
from cli.progress import PLAIN_LINE
from engines import models as registry
from jayavatar import catalog
from jayavatar.errors import ModelMissing
from jayavatar.settings import Settings


def torch_like_zip(path: Path) -> bytes:
    """Write a file shaped like a torch zip checkpoint (archive/data.pkl) and return its bytes."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weights": list(range(50))}))
        archive.writestr("archive/version", "3\n")
    return path.read_bytes()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A folder holding the two files of the fake model `tiny`."""
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": "tiny"}), encoding="utf-8")
    torch_like_zip(folder / "model.pth")
    return folder


@pytest.fixture
def tiny(source: Path, monkeypatch: pytest.MonkeyPatch) -> catalog.Model:
    """Register, as one engine-table row, an engine whose two-file model matches `source`."""

    def entry(name: str) -> catalog.ModelFile:
        data = (source / name).read_bytes()
        return catalog.ModelFile(
            f"tiny/{name}",
            f"{catalog.HUB}/owner/tiny/resolve/main/{name}",
            len(data),
            hashlib.sha256(data).hexdigest(),
        )

    model = catalog.Model(
        name="tiny",
        licence="Test Licence (non-commercial)",
        licence_url="https://example.invalid/licence",
        files=(entry("config.json"), entry("model.pth")),
        how_to_get="jayavatar models pull tiny",
    )
    row = catalog.Engine("tiny", "voice", "tests.nowhere:Tiny", "core", "CPU", ("en",), (model,))
    monkeypatch.setitem(catalog.ENGINES, "tiny", row)
    return model


def invoke(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run the models group; return exit code, stdout and stderr."""
    result = CliRunner().invoke(models, list(args), obj=settings)
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_every_model_with_its_licence(tmp_path: Path) -> None:
    """`models list` names each known model, its engine, presence and licence."""
    code, out, _ = invoke(Settings(models_dir=tmp_path), "list")
    assert code == 0
    for name in ("xtts_v2", "wav2lip", "wav2lip_gan", "s3fd"):
        assert name in out
    assert "Coqui Public Model License" in out and "non-commercial" in out
    assert "0/6 files" in out


def test_import_then_verify(tiny: catalog.Model, source: Path, tmp_path: Path) -> None:
    """Importing a folder places and hashes the files; verify then reports them ok."""
    settings = Settings(models_dir=tmp_path / "models")
    code, out, err = invoke(settings, "import", "tiny", str(source))
    assert code == 0, err
    assert "tiny/model.pth: ok (sha256 matches)" in out
    assert (tmp_path / "models" / "tiny" / "config.json").is_file()
    code, out, _ = invoke(settings, "verify", "tiny")
    assert code == 0 and out.count(" ok ") == 2


def test_verify_catches_a_corrupt_file(tiny: catalog.Model, source: Path, tmp_path: Path) -> None:
    """A flipped byte keeps the size but fails the hash; verify says so and exits 1."""
    settings = Settings(models_dir=tmp_path / "models")
    invoke(settings, "import", "tiny", str(source))
    config = tmp_path / "models" / "tiny" / "config.json"
    data = bytearray(config.read_bytes())
    data[-3] = ord("z")  # still valid JSON: only the digest can tell
    config.write_bytes(bytes(data))
    code, out, _ = invoke(settings, "verify", "tiny")
    assert code == 1
    assert "bad hash" in out and "jayavatar models pull tiny" in out


def test_import_of_a_wrong_file_is_refused_and_removed(
    tiny: catalog.Model, source: Path, tmp_path: Path
) -> None:
    """A file that does not match the release is not left in place; the error is one line."""
    (source / "model.pth").write_bytes(b"\x80\x02 not the release")
    settings = Settings(models_dir=tmp_path / "models")
    code, _, err = invoke(settings, "import", "tiny", str(source))
    assert code == 1
    errors = [line for line in err.splitlines() if not PLAIN_LINE.match(line)]  # not progress
    assert len(errors) == 1 and "tiny/model.pth is wrong size" in errors[0]
    assert not (tmp_path / "models" / "tiny" / "model.pth").exists()


@pytest.fixture
def mirror(source: Path) -> Iterator[str]:
    """Serve `source` over HTTP on loopback, laid out like the hub's resolve URLs."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            path = source / name
            if not self.path.startswith("/owner/tiny/resolve/main/") or not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pull_from_a_mirror_downloads_and_verifies(
    tiny: catalog.Model, mirror: str, tmp_path: Path
) -> None:
    """`pull --endpoint` fetches each file, states the licence and verifies the digests."""
    settings = Settings(models_dir=tmp_path / "models")
    code, out, err = invoke(settings, "pull", "tiny", "--endpoint", mirror)
    assert code == 0, err
    assert "Test Licence (non-commercial)" in out
    assert registry.check(tmp_path / "models", "tiny")[1].state == "ok"
    assert not list((tmp_path / "models").rglob("*.part"))


def test_pull_offline_fails_with_one_clear_line(tiny: catalog.Model, tmp_path: Path) -> None:
    """With nothing listening, pull names the URL and the import fix on one line."""
    settings = Settings(models_dir=tmp_path / "models")
    code, _, err = invoke(settings, "pull", "tiny", "--endpoint", "http://127.0.0.1:9")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1
    assert "cannot download http://127.0.0.1:9/owner/tiny/resolve/main/config.json" in lines[0]
    assert "jayavatar models import" in lines[0]


def test_pull_of_a_model_without_download_points_to_import(tmp_path: Path) -> None:
    """Wav2Lip has no direct download; pull says how to get and import it."""
    code, _, err = invoke(Settings(models_dir=tmp_path), "pull", "wav2lip_gan")
    assert code == 1 and "no direct download" in err and "models import wav2lip_gan" in err


def test_require_names_the_missing_file_and_the_fix(tmp_path: Path) -> None:
    """The worker's start-up check raises ModelMissing with the file and the command."""
    with pytest.raises(ModelMissing, match=r"xtts_v2/config\.json is missing.*pull xtts_v2"):
        registry.require(tmp_path, "xtts_v2")
    folder = tmp_path / "xtts_v2"
    folder.mkdir()
    for name in ("config.json", "vocab.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "model.pth").write_bytes(b"")
    with pytest.raises(ModelMissing, match=r"xtts_v2/model\.pth is empty"):
        registry.require(tmp_path, "xtts_v2")
    (folder / "model.pth").write_bytes(b"\x80\x02weights")
    assert registry.require(tmp_path, "xtts_v2") == folder


def test_format_checks_without_torch(tmp_path: Path) -> None:
    """JSON must parse; .pth must be a torch zip with data.pkl or a legacy pickle."""
    (tmp_path / "bad.json").write_text("{nope", encoding="utf-8")
    assert "not valid JSON" in registry.format_problem(tmp_path / "bad.json")
    torch_like_zip(tmp_path / "good.pth")
    assert registry.format_problem(tmp_path / "good.pth") == ""
    (tmp_path / "legacy.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert registry.format_problem(tmp_path / "legacy.pth") == ""
    with zipfile.ZipFile(tmp_path / "other.pth", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "without data.pkl" in registry.format_problem(tmp_path / "other.pth")
    (tmp_path / "html.pth").write_text("<html>sign in</html>", encoding="utf-8")
    assert "neither" in registry.format_problem(tmp_path / "html.pth")


def fake_env(root: Path, folder: str) -> None:
    """Make `root/folder/bin/python` run this test's interpreter."""
    python = root / folder / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)


def test_doctor_reports_each_problem_with_its_fix(tmp_path: Path) -> None:
    """Missing envs, unreachable Redis and absent weights fail with fixes; good envs pass."""
    fake_env(tmp_path, ".venv")
    settings = Settings(
        models_dir=tmp_path / "models", redis_url="redis://127.0.0.1:9/0", voice_engine="xtts"
    )
    checks = {c.name: c for c in run_doctor(settings, tmp_path)}
    assert checks["env core"].level == "ok" and checks["core packages"].level == "ok"
    assert checks["env xtts"].level == "fail"
    assert checks["env xtts"].fix == "make .venvs/xtts/.stamp"
    assert checks["env voice"].level == "warn"  # piper is not the configured engine
    assert checks["redis"].level == "fail" and "JAYAVATAR_REDIS_URL" in checks["redis"].fix
    assert checks["model xtts_v2"].level == "fail"
    assert checks["model xtts_v2"].fix == "jayavatar models pull xtts_v2"
    assert checks["model s3fd"].level == "warn"
    result = CliRunner().invoke(doctor, ["--root", str(tmp_path)], obj=settings)
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "problem(s)" in result.stdout
