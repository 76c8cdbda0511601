"""The engine table: an engine is its code plus one row, and the build files agree with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.choices import language_choices
from cli.models import models as models_cli
from cli.progress import PLAIN_LINE
from engines import registry
from engines.base import no_progress
from engines.voice.text import CHAR_LIMITS, LANGUAGES
from jayavatar import catalog
from jayavatar.errors import BadInput, ModelMissing
from jayavatar.settings import Settings
from jobs.validate import check_language
from tests.support import tiny_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tone(monkeypatch: pytest.MonkeyPatch) -> catalog.Engine:
    """The tiny test engine, registered by its one row."""
    monkeypatch.setitem(catalog.ENGINES, "tone", tiny_engine.ROW)
    return tiny_engine.ROW


def write_table(path: Path, good: bool = True) -> Path:
    """Write a tone table (or a damaged one) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = bytes(range(26)) if good else b"\x00" * 3
    path.write_bytes(tiny_engine.MAGIC + body)
    return path


def models_command(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run `jayavatar models ARGS` with the project's environments as root."""
    result = CliRunner().invoke(models_cli, [*args], obj=settings)
    return result.exit_code, result.stdout, result.stderr


def test_a_new_engine_is_its_code_plus_one_row(tone: catalog.Engine, tmp_path: Path) -> None:
    """Settings, the registry, the language checks and the models commands all see the row."""
    settings = Settings(models_dir=tmp_path / "models", voice_engine="tone")
    assert check_language("EO", settings) == "eo"
    assert check_language("en-GB", settings) == "en"
    with pytest.raises(BadInput, match="not available with the tone voice; use one of en, eo"):
        check_language("fr", settings)
    assert [c.value for c in language_choices(settings, "")] == ["en", "eo"]
    with pytest.raises(ModelMissing, match=r"table\.bin is not a tone table; fix: .*import"):
        registry.build_voice_engine(settings)  # the worker would stop at start
    code, out, err = models_command(settings, "import", "tone_table", str(write_table(
        tmp_path / "download" / "table.bin")), "--root", str(ROOT))  # fmt: skip
    assert code == 0, err
    assert "tone/table.bin: ok (tone table ok)" in out
    engine = registry.build_voice_engine(settings)
    assert isinstance(engine, tiny_engine.ToneEngine)
    seconds = engine.synthesize("hi", "en", tmp_path, tmp_path / "hi.wav", no_progress)
    assert seconds == pytest.approx(0.1) and (tmp_path / "hi.wav").stat().st_size > 1000
    code, out, _ = models_command(settings, "list")
    assert re.search(r"tone_table\s+tone\s+1/1 files\s+ready", out)


def test_models_import_refuses_a_file_its_loader_rejects(
    tone: catalog.Engine, tmp_path: Path
) -> None:
    """The loader runs in the row's environment; a refused file is not left in place."""
    settings = Settings(models_dir=tmp_path / "models")
    damaged = write_table(tmp_path / "download" / "table.bin", good=False)
    code, _, err = models_command(settings, "import", "tone_table", str(damaged),
                                  "--root", str(ROOT))  # fmt: skip
    errors = [line for line in err.splitlines() if not PLAIN_LINE.match(line)]  # not progress
    assert code == 1 and len(errors) == 1
    assert "is not a tone table; fix: `jayavatar models import tone_table FILE`" in err
    assert not (tmp_path / "models" / "tone" / "table.bin").exists()
    write_table(tmp_path / "models" / "tone" / "table.bin", good=False)
    code, out, _ = models_command(settings, "verify", "tone_table", "--root", str(ROOT))
    assert code == 1 and re.search(r"tone_table \(load\)\s+broken\s+.*not a tone table", out)


def test_settings_accept_only_engines_of_the_table_and_of_the_kind() -> None:
    with pytest.raises(ValueError, match="unknown voice engine 'wav2lip'; known: piper, xtts"):
        Settings(voice_engine="wav2lip")
    with pytest.raises(ValueError, match="unknown lipsync engine 'espeak'"):
        Settings(lipsync_engine="espeak")


def test_every_row_points_at_code_and_environments_that_exist() -> None:
    for row in catalog.ENGINES.values():
        module = row.target.split(":")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), row.target
        assert row.env in catalog.ENVS, row.name
        for model in row.models:
            if model.check:
                assert (ROOT / (model.check.split(":")[0].replace(".", "/") + ".py")).is_file()
    assert set(catalog.ENGINES["xtts"].languages) == set(LANGUAGES) == set(CHAR_LIMITS)


def test_makefile_and_dockerfile_follow_the_table() -> None:
    """`make` reads its environments from the table; Docker has a target per environment."""
    script = [sys.executable, "jayavatar/catalog.py", "envs"]
    listed = subprocess.run(script, cwd=ROOT, capture_output=True, text=True, check=True)
    assert listed.stdout.split() == catalog.env_names() == ["voice", "lipsync", "xtts"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "ENVS := $(shell $(PYTHON) jayavatar/catalog.py envs --default)" in makefile
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    for name, env in catalog.ENVS.items():
        assert f"FROM base AS {name}\n" in dockerfile, name
        if env.requirements:
            assert (ROOT / env.requirements).is_file()
            assert f"pip install . -r {env.requirements}" in dockerfile, name
