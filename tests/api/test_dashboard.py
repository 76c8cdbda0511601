"""The dashboard in headless Chromium: log in with a key, render, watch it finish, play it.

Needs Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver) and
the `selenium` package; skipped with the reason when any is missing. The screenshot is kept
under `out/test-artifacts/` (and the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.dashboard import quality_line, timeline
from api.keys import ApiKeys
from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.abuse.discord import wav_bytes
from tests.api.live import headers, live_server, wait_until_final
from tests.support.assets import demo_inputs
from tests.support.png import read_png
from tests.support.stack import ROOT, Stack, running_stack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
ARTIFACTS = ROOT / "out" / "test-artifacts"
try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the browser tests skip below
    webdriver = None  # type: ignore[assignment]
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None or webdriver is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver) and selenium",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A redis-server and both workers; the lip-sync worker draws each render's report."""
    with running_stack(
        tmp_path_factory.mktemp("stack"), {"JAYAVATAR_QUALITY_REPORT": "true"}
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def site(stack: Stack) -> Iterator[tuple[str, str]]:
    """The API on the stack, a key for alice, and her voice and avatar enrolled via the API."""
    settings: Settings = stack.settings()  # type: ignore[assignment]

    async def make_key() -> str:
        client = await JobClient.connect(settings)
        try:
            keys = ApiKeys(client.redis, settings, client.accounts)
            return (await keys.create("alice", admin=True))[0]
        finally:
            await client.close()

    token = asyncio.run(make_key())
    with live_server(settings) as base:
        voice, avatar = demo_inputs()
        for url, path in ((f"{base}/v1/voices/me", voice), (f"{base}/v1/avatars/face", avatar)):
            r = httpx.put(
                url,
                headers=headers(token),
                content=path.read_bytes(),
                params={"filename": path.name},
                timeout=30,
            )
            assert wait_until_final(base, token, r.json()["id"])["state"] == "done"
        yield base, token


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium driven through chromedriver."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1280,1400",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def play(driver: Any) -> dict[str, float]:
    """Play the page's video until it advances; return its readyState, duration and time."""
    script = """
    const done = arguments[arguments.length - 1];
    const v = document.getElementById('video');
    const report = () => done({ready: v.readyState, duration: v.duration, time: v.currentTime,
                               error: v.error ? v.error.code : 0});
    v.addEventListener('timeupdate', () => { if (v.currentTime > 0) report(); });
    v.addEventListener('error', report);
    v.play().catch(report);
    """
    driver.set_script_timeout(60)
    result: dict[str, float] = driver.execute_async_script(script)
    return result


@needs_browser
def test_log_in_render_watch_and_play(site: tuple[str, str], browser: Any, tmp_path: Path) -> None:
    base, token = site
    browser.get(f"{base}/dashboard")
    assert browser.current_url.endswith("/dashboard/login")
    browser.find_element(By.ID, "api_key").send_keys(token)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/dashboard"))
    page = browser.page_source
    assert "alice" in page and "no live worker" not in page

    browser.find_element(By.ID, "text").send_keys("The dashboard renders this line.")
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 30).until(lambda d: "/dashboard/requests/" in d.current_url)
    rid = browser.current_url.rsplit("/", 1)[1]

    # The page follows the request's events and reloads itself once it is final, and again
    # once the quality report is there; look at it only after the last reload.
    stale = (StaleElementReferenceException,)
    WebDriverWait(browser, 300, ignored_exceptions=stale).until(
        lambda d: (
            (
                d.find_element(By.ID, "state").text in ("done", "failed", "cancelled")
                and d.find_elements(By.ID, "video")
            )
            or d.find_elements(By.ID, "req-error")
        )
    )
    WebDriverWait(browser, 240, ignored_exceptions=stale).until(
        lambda d: d.find_elements(By.ID, "quality-plot") or d.find_elements(By.ID, "req-error")
    )
    assert browser.find_element(By.ID, "state").text == "done"
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.getElementById('video').readyState") >= 1
    )
    played = play(browser)
    assert played["error"] == 0, played
    assert played["ready"] >= 2 and played["time"] > 0
    api_view = httpx.get(f"{base}/v1/requests/{rid}", headers=headers(token)).json()
    assert api_view["state"] == "done"
    assert 0.5 < played["duration"] < 60
    rows = browser.find_elements(By.CSS_SELECTOR, "table.timeline tr")
    assert len(rows) >= 2
    video = browser.find_element(By.ID, "video")
    assert video.get_attribute("poster").endswith("/v1/avatars/alice/face/poster.jpg")

    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "const i = document.getElementById('quality-plot');return i.complete && i.naturalWidth"
        )
    )
    shown = browser.execute_script(
        "const i = document.getElementById('quality-plot');"
        "return [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]"
    )
    assert shown[0] >= 800 and shown[1] >= 550 and shown[2] > 300, shown
    assert "sync" in browser.find_element(By.ID, "quality").text
    picture = httpx.get(f"{base}/v1/requests/{rid}/quality.png", headers=headers(token))
    assert picture.headers["content-type"] == "image/png"
    (tmp_path / "quality.png").write_bytes(picture.content)
    assert read_png(tmp_path / "quality.png").text["Panels"] == "curves,mouths,voice,checks"

    keep(browser, tmp_path, "dashboard-render.png")

    # The overview lists it with an inline player; the assets page shows the avatar's poster.
    browser.get(f"{base}/dashboard")
    assert browser.find_elements(By.CSS_SELECTOR, f'video[src="/v1/requests/{rid}/video"]')
    keep(browser, tmp_path, "dashboard-overview.png")
    browser.get(f"{base}/dashboard/assets")
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "const i = document.querySelector('.tile img');return i && i.complete && i.naturalWidth"
        )
    )
    keep(browser, tmp_path, "dashboard-assets.png")


def keep(browser: Any, tmp_path: Path, name: str) -> None:
    """Save a screenshot in the test's tmp dir and under out/test-artifacts."""
    shot = tmp_path / name
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ARTIFACTS / name)


@needs_browser
def test_a_bad_key_stays_on_the_login_page(site: tuple[str, str], browser: Any) -> None:
    base, _ = site
    browser.get(f"{base}/dashboard/login")
    browser.find_element(By.ID, "api_key").send_keys("jya_000000000000_" + "A" * 43)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "error"))
    assert browser.find_element(By.ID, "error").text == "unknown or revoked API key"
    browser.get(f"{base}/dashboard")
    assert browser.current_url.endswith("/dashboard/login")


# Without a browser: the pages and their guards, straight through ASGI.

SAME = {"Origin": "http://api.test"}


async def test_pages_need_a_login(api: httpx.AsyncClient) -> None:
    for path in ("/", "/dashboard", "/dashboard/assets", f"/dashboard/requests/{'0' * 32}"):
        r = await api.get(path, follow_redirects=True)
        assert r.url.path == "/dashboard/login" and 'name="api_key"' in r.text


async def test_login_sets_a_strict_http_only_cookie(api: httpx.AsyncClient, alice: str) -> None:
    r = await api.post("/dashboard/login", data={"api_key": alice}, headers=SAME)
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard")
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = await api.get("/dashboard")
    assert page.status_code == 200 and "alice" in page.text
    out = await api.post("/dashboard/logout", headers=SAME)
    assert out.headers["location"] == "/dashboard/login"
    api.cookies.clear()


async def test_a_bad_key_is_refused_with_a_message(api: httpx.AsyncClient) -> None:
    r = await api.post("/dashboard/login", data={"api_key": "nope"}, headers=SAME)
    assert r.status_code == 401 and "unknown or revoked API key" in r.text


async def test_cross_site_posts_are_refused(api: httpx.AsyncClient, alice: str) -> None:
    evil = {"Origin": "http://evil.test"}
    r = await api.post("/dashboard/login", data={"api_key": alice}, headers=evil)
    assert r.status_code == 403
    api.cookies.set("jayavatar_key", alice)
    try:
        r = await api.post("/dashboard/renders", data={"text": "hi"}, headers=evil)
        assert r.status_code == 403 and "cross-site" in r.text
    finally:
        api.cookies.clear()


async def test_admin_actions_need_an_admin_key(
    api: httpx.AsyncClient, alice: str, root: str, keys: ApiKeys
) -> None:
    api.cookies.set("jayavatar_key", alice)
    r = await api.post("/dashboard/admin/pause", headers=SAME)
    assert r.status_code == 403
    assert not await keys.accounts.is_paused()
    api.cookies.set("jayavatar_key", root)
    r = await api.post("/dashboard/admin/pause", headers=SAME)
    assert r.status_code == 303 and await keys.accounts.is_paused()
    page = await api.get("/dashboard")
    assert '<strong id="paused">paused</strong>' in page.text
    await api.post("/dashboard/admin/resume", headers=SAME)
    assert not await keys.accounts.is_paused()
    api.cookies.clear()


async def test_a_refused_render_shows_the_reason(api: httpx.AsyncClient, alice: str) -> None:
    api.cookies.set("jayavatar_key", alice)
    try:
        r = await api.post("/dashboard/renders", data={"text": "hi"}, headers=SAME)
        assert r.status_code == 422
        assert "no voice given and no default voice set" in r.text
    finally:
        api.cookies.clear()


async def test_others_requests_are_not_found_pages(
    api: httpx.AsyncClient, alice: str, bob: str
) -> None:
    made = await api.put("/v1/voices/v", headers=headers(bob), content=wav_bytes(3.0))
    api.cookies.set("jayavatar_key", alice)
    try:
        r = await api.get(f"/dashboard/requests/{made.json()['id']}")
        assert r.status_code == 404 and "no such request" in r.text
        assert r.headers["content-type"].startswith("text/html")
    finally:
        api.cookies.clear()


async def test_a_request_without_a_picture_shows_none(api: httpx.AsyncClient, alice: str) -> None:
    made = await api.put("/v1/voices/v", headers=headers(alice), content=wav_bytes(3.0))
    rid = made.json()["id"]
    r = await api.get(f"/v1/requests/{rid}/quality.png", headers=headers(alice))
    assert r.status_code == 404 and "no quality picture" in r.text
    api.cookies.set("jayavatar_key", alice)
    try:
        page = await api.get(f"/dashboard/requests/{rid}")
        assert page.status_code == 200 and 'id="quality-plot"' not in page.text
    finally:
        api.cookies.clear()


def test_the_timeline_puts_stages_in_order_with_calls_inside() -> None:
    spans = timeline(
        {
            "lipsync_stage_s": 4.0,
            "render_s": 3.0,
            "voice_wait_s": 1.0,
            "voice_stage_s": 2.0,
            "synthesize_s": 1.5,
            "lipsync_wait_s": 1.0,
            "mystery": 0.5,
        }
    )
    names = [n for n, *_ in spans]
    assert names == [
        "voice_wait_s",
        "voice_stage_s",
        "synthesize_s",
        "lipsync_wait_s",
        "lipsync_stage_s",
        "render_s",
        "mystery",
    ]
    by = {n: (left, width) for n, _s, left, width in spans}
    assert by["voice_wait_s"] == (0.0, 12.5)
    assert by["voice_stage_s"] == (12.5, 25.0)
    assert by["synthesize_s"] == (12.5, 18.75)
    assert by["lipsync_stage_s"] == (50.0, 50.0)
    assert by["render_s"][0] == 50.0


def test_the_quality_line_is_short_and_sorted() -> None:
    assert (
        quality_line({"sync": 0.91234, "psnr_db": 47.0, "ok": True})
        == "ok True · psnr_db 47 · sync 0.912"
    )
    assert quality_line({}) == ""
    stats = {"audio_s": 1.62, "frames": 40, "face_frames": 30, "fps": 25}
    assert quality_line({}, stats) == "1.6 s of speech · 40 frames · face in 75%"
    assert quality_line({"sync": 0.5}, stats) == "sync 0.5"
    # The quality report has its own one-line summary.
    report = {"summary": "sync 0.85 @0f · voice 0.86 (stock 0.61)", "sync": {"corr": 0.85}}
    assert quality_line(report, stats) == report["summary"]


async def test_admins_see_every_worker_host(
    api: httpx.AsyncClient, settings: Settings, client: JobClient, root: str, alice: str
) -> None:
    from jobs.hosts import Beacon

    gpu = Beacon(settings.model_copy(update={"worker_name": "gpu-box"}), "lipsync")
    cpu = Beacon(settings.model_copy(update={"worker_name": "voice-box"}), "voice")
    await gpu.busy(client.redis, "lipsync:abc:1")
    await cpu.idle(client.redis)
    api.cookies.set("jayavatar_key", root)
    try:
        page = (await api.get("/dashboard")).text
        table = page[page.index('id="workers"') :]
        assert "gpu-box" in table and "busy (lipsync:abc:1)" in table and "landmark" in table
        assert "voice-box" in table and "idle" in table and "s ago" in table
        api.cookies.set("jayavatar_key", alice)
        assert 'id="workers"' not in (await api.get("/dashboard")).text
    finally:
        api.cookies.clear()
