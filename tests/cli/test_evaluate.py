"""`jayavatar eval` from the core environment: it finds its inputs, runs the report in the
lip-sync environment, prints the table and writes the JSON; errors come back as the same class.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.evaluate import eval_cmd, quality_python
from jayavatar import errors
from jayavatar.settings import Settings
from storage import build_storage
from storage.keys import avatar_prefix, render_key, voice_prefix
from tests.support.png import read_png
from tests.support.quality import TEXT, landmark_renders
from tests.support.stack import ROOT, RedisProcess

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An honest landmark render and one with its audio 5 frames late, with avatar and voice."""
    return landmark_renders(tmp_path_factory.mktemp("renders"))


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, renders: dict[str, Path]
) -> Iterator[Settings]:
    """A private Redis and data folder holding the voice, the avatar and two finished renders."""
    folder = tmp_path_factory.mktemp("deployment")
    server = RedisProcess(folder / "redis")
    server.start()
    settings = Settings(
        _env_file=None,
        redis_url=server.url,
        data_dir=folder / "data",
        key_prefix=f"t{int(time.time())}",
    )
    store = build_storage(settings)
    for prefix, src in (
        (voice_prefix("local", "qa"), renders["voice"]),
        (avatar_prefix("local", "qa"), renders["avatar"]),
    ):
        shutil.copytree(src, store.local_path(prefix))
    try:
        yield settings
    finally:
        server.stop()


def request(settings: Settings, render: Path, kind: str = "render", state: str = "done") -> str:
    """Store a request record whose output is `render`; return its id."""
    from jobs.client import JobClient
    from jobs.records import Request, new_request_id

    rid = new_request_id()
    store = build_storage(settings)
    store.put_file(render_key("local", rid), render)

    async def create() -> None:
        client = await JobClient.connect(settings)
        try:
            await client.store.create(
                Request(
                    id=rid,
                    kind=kind,
                    state=state,
                    user="local",
                    text=TEXT,
                    language="en",
                    voice="local/qa",
                    avatar="local/qa",
                    output_key=render_key("local", rid),
                    created_at=time.time(),
                )
            )
        finally:
            await client.close()

    asyncio.run(create())
    return rid


def run(settings: Settings, *args: str) -> Result:
    """Invoke `eval` as the CLI group would, with these settings."""
    return CliRunner().invoke(eval_cmd, list(args), obj=settings)


def test_a_render_with_its_voice_avatar_and_text(renders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run(
        Settings(_env_file=None),
        str(renders["good"]),
        "--voice",
        str(renders["voice"]),
        "--avatar",
        str(renders["avatar"]),
        "--text",
        TEXT,
        "--json",
        str(out),
        "--strict",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(out.read_text())
    assert report["flags"] == []
    lines = result.output.splitlines()
    assert lines[0].startswith(f"Quality report of good.mp4: {report['frames']} frames at 25 fps")
    for label in ("lip sync", "voice likeness", "intelligibility", "authenticity", "artifacts"):
        row = next(line for line in lines if line.strip().startswith(label))
        assert row.rstrip().endswith("ok"), row
    assert f"summary: {report['summary']}" in lines
    assert lines[-1] == "flagged: nothing"


def test_plot_draws_the_report_as_a_picture(renders: dict[str, Path], tmp_path: Path) -> None:
    plot = tmp_path / "pictures" / "good.png"
    args = ["--voice", str(renders["voice"]), "--avatar", str(renders["avatar"]), "--text", TEXT]
    result = run(Settings(_env_file=None), str(renders["good"]), *args, "--plot", str(plot))
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.output.splitlines()[-1] == f"picture: {plot}"
    assert plot.stat().st_size > 30_000
    picture = read_png(plot)  # every chunk checked, the pixels inflated
    assert picture.width >= 800 and picture.height >= 550
    assert picture.text["Panels"] == "curves,mouths,voice,checks"
    assert picture.text["Mouths"] == "6"


def test_a_request_supplies_everything_and_strict_fails_on_flags(
    deployment: Settings, renders: dict[str, Path]
) -> None:
    rid = request(deployment, renders["shifted"])
    result = run(deployment, "--request", rid, "--strict")
    assert result.exit_code == 3, (result.output, result.exception)
    assert "flagged: lips 5 frames ahead of the voice" in result.output.splitlines()
    sync_row = next(line for line in result.output.splitlines() if "lip sync" in line)
    assert "lag -5 frames" in sync_row and sync_row.rstrip().endswith("flagged")


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        ((), errors.BadInput, "give --request ID"),
        (("--request", "0" * 32), errors.NotFound, "no such request"),
        (("x.mp4", "--voice", "qa", "--avatar", "qa", "--text", "hi"), errors.NotFound, "x.mp4"),
    ],
)
def test_missing_inputs_are_one_line_errors(
    deployment: Settings, args: tuple[str, ...], error: type[Exception], words: str
) -> None:
    result = run(deployment, *args)
    assert isinstance(result.exception, error), result.exception
    assert words in str(result.exception)


def test_unknown_assets_and_unfinished_requests(
    deployment: Settings, renders: dict[str, Path]
) -> None:
    good = str(renders["good"])
    result = run(deployment, good, "--voice", "nobody", "--avatar", "qa", "--text", "hi")
    assert isinstance(result.exception, errors.NotFound)
    assert "no voice 'nobody'" in str(result.exception)
    rid = request(deployment, renders["good"], state="lipsync")
    result = run(deployment, "--request", rid)
    assert isinstance(result.exception, errors.BadInput)
    assert "has no render yet (it is lipsync)" in str(result.exception)


def test_an_error_in_the_lipsync_environment_keeps_its_class(
    deployment: Settings, renders: dict[str, Path]
) -> None:
    # A sound file is no render: the report's own BadInput crosses the process boundary.
    wav = renders["voice"] / "reference.wav"
    result = run(deployment, str(wav), "--voice", "qa", "--avatar", "qa", "--text", TEXT)
    assert isinstance(result.exception, errors.BadInput), result.exception
    assert str(result.exception) == "reference.wav is not a video"


def test_the_core_environment_delegates_to_the_lipsync_one() -> None:
    assert quality_python() == ROOT / ".venvs" / "lipsync" / "bin" / "python"
