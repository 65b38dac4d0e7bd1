"""The web page in headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download).

Against the real stack (:mod:`web_support`): the page loads without console errors, the jobs table shows
a running job's progress, the models list shows the trained model with its plots and a working rollback,
and "try it live" plays a recorded session through the stream: two screenshots a second apart must show
the trace colours in the trace canvas, a drawn skeleton, and both changing. With keys on, the page says
that it needs a key, and works once one is entered.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from web_support import PEPPER, WebStack, running_job, web_stack

from emgpose import auth
from emgpose.db.engine import session_scope

pytest_plugins = ["gateway_fixtures"]

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PRED, TRUE = (0xE4, 0x57, 0x2E), (0x2E, 0x86, 0xAB)  # COLORS in web/app.js
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; scripts/ci-browser-deps.sh installs it in CI)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url: str, train_model, train_synth: Path) -> Iterator[WebStack]:
    with web_stack(tmp_path_factory.mktemp("web-page"), pg_url, train_model, train_synth) as served:
        yield served


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.refused: list[str] = []  # "status path" of every answer >= 400
        self.page.on("response", lambda r: self.refused.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        self.hosts: set[str] = set()  # host:port of every request
        self.page.on("request", lambda r: self.hosts.add(r.url.split("/")[2]) if "://" in r.url else None)
        self.page.goto(url)

    def __getattr__(self, name: str):
        return getattr(self.page, name)


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels within ``tolerance`` of ``colour`` on every channel."""
    return int((np.abs(image - np.array(colour)).max(axis=2) <= tolerance).sum())


def changed(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b).max(axis=2) > 30).mean())


def test_the_page_shows_jobs_with_progress_datasets_and_models_with_plots_without_console_errors(
    browser, stack: WebStack
) -> None:
    job_id = running_job(stack.gateway, stack.dataset_id, 42.0, "windows")
    page = Page(browser, stack.gateway.url + "/")
    row = page.locator(f'#jobs-table tr[data-job="{job_id}"]')
    row.wait_for(timeout=10_000)
    assert "running" in row.inner_text() and "42%" in row.inner_text() and "windows" in row.inner_text()
    running_job_later = page.locator(f'#jobs-table tr[data-job="{job_id}"] td:nth-child(4)')
    from emgpose.jobs import repo

    repo.report(job_id, 77.0, "features")  # what the worker reports next shows without a reload
    page.wait_for_function(
        "id => document.querySelector(`#jobs-table tr[data-job='${id}']`).innerText.includes('77%')",
        arg=job_id,
        timeout=10_000,
    )
    assert "features" in page.locator(f'#jobs-table tr[data-job="{job_id}"]').inner_text()
    assert running_job_later.locator(".bar > span").evaluate("e => e.style.width") == "77%"
    assert "synth-web" in page.locator("#datasets-table").inner_text()
    model = page.locator('#models-table tr[data-model="hand"]')
    assert stack.version in model.inner_text()
    model.click()
    page.locator("#plots img").first.wait_for(timeout=10_000)
    page.wait_for_function("() => [...document.querySelectorAll('#plots img')].every(i => i.naturalWidth > 0)")
    assert page.locator("#plots img").count() >= 2
    assert page.locator("#versions-table tbody").inner_text().count("latest") == 1
    assert page.errors == [], page.errors


def test_rollback_from_the_page_moves_latest(browser, stack: WebStack) -> None:
    from inference_support import publish_variant

    newer = publish_variant(stack.gateway.settings.store_uri, trees=5)
    try:
        page = Page(browser, stack.gateway.url + "/")
        page.locator('#models-table tr[data-model="hand"]').click()
        button = page.locator("#versions-table tr", has_text=stack.version).locator("button.promote")
        assert button.inner_text() == "Roll back to this"
        button.click()
        page.wait_for_function(
            "v => document.querySelector('#model-title').innerText.includes('latest ' + v)", arg=stack.version
        )
        with stack.gateway.client() as client:
            assert client.get("/v1/models").json()["items"][0]["latest"] == stack.version
        assert page.errors == [], page.errors
    finally:
        with stack.gateway.client() as client:  # whatever happened, the version the stack serves is latest
            client.post("/v1/models/hand/promote", json={"version": stack.version})
    assert newer != stack.version


def test_try_it_live_draws_moving_traces_and_a_moving_skeleton(browser, stack: WebStack, tmp_path: Path) -> None:
    page = Page(browser, stack.gateway.url + "/")
    page.wait_for_function("() => document.querySelector('#live-session').options.length > 0", timeout=10_000)
    assert "(test)" in page.locator("#live-session").inner_text().splitlines()[0]  # a test session first
    page.click("#live-play")
    page.wait_for_function("() => /\\d+ ms/.test(document.querySelector('#live-latency').innerText)", timeout=15_000)
    assert stack.version in page.inner_text("#live-model")
    page.wait_for_timeout(800)
    traces = [pixels(page.locator("#live-traces").screenshot())]
    skeletons = [pixels(page.locator("#live-skeleton").screenshot())]
    page.wait_for_timeout(1000)
    traces.append(pixels(page.locator("#live-traces").screenshot()))
    skeletons.append(pixels(page.locator("#live-skeleton").screenshot()))
    page.screenshot(path=str(tmp_path / "live.png"))  # kept in pytest's temporary folder for a look
    for image in traces:
        assert near(image, PRED) > 300 and near(image, TRUE) > 300, (near(image, PRED), near(image, TRUE))
    assert changed(*traces) > 0.005, "the traces did not move between two screenshots a second apart"
    for image in skeletons:
        drawn = (np.abs(image - 255).max(axis=2) > 40).sum()
        assert drawn > 800 and near(image, PRED) > 200, (drawn, near(image, PRED))
    assert changed(*skeletons) > 0.001, "the skeleton did not move between two screenshots a second apart"
    page.click("#live-stop")
    assert page.inner_text("#live-status") == "stopped"
    assert page.errors == [], page.errors


def test_with_keys_on_the_page_asks_for_a_key_and_works_once_one_is_entered(
    browser, stack: WebStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str
) -> None:
    from gateway_support import serve_gateway

    with session_scope(pg_url) as session:
        read = auth.create_key(session, PEPPER.encode(), "read", "page-reader")[1]
        admin = auth.create_key(session, PEPPER.encode(), "admin", "page-admin")[1]
    env = {"AUTH_ENABLED": "true", "AUTH_PEPPER": PEPPER, "STORE_URI": stack.gateway.settings.store_uri}
    env["ALLOWED_DATA_ROOTS"] = ",".join(stack.gateway.settings.allowed_data_roots)
    with serve_gateway(monkeypatch, tmp_path, pg_url, empty=False, **env) as gw:
        page = Page(browser, gw.url + "/")
        page.wait_for_function("() => !document.querySelector('#error').hidden", timeout=10_000)
        assert "API key needed" in page.inner_text("#error")
        assert "needs an API key" in page.inner_text("#auth-status")
        assert page.locator("#app").is_hidden()
        page.fill("#key-input", read)
        page.click("#key-use")
        page.locator('#models-table tr[data-model="hand"]').wait_for(timeout=10_000)
        assert "scope read" in page.inner_text("#auth-status") and page.locator("#error").is_hidden()
        assert page.evaluate("() => sessionStorage.getItem('emgpose.apiKey')") == read
        page.locator('#models-table tr[data-model="hand"]').click()
        page.locator("#plots img").first.wait_for(timeout=10_000)  # images fetched with the key
        page.wait_for_function("() => document.querySelector('#live-session').options.length > 0")
        assert page.locator("button.promote").count() == 0  # promote and rollback are for admin keys
        page.click("#key-forget")
        page.wait_for_function("() => document.querySelector('#app').hidden")
        page.fill("#key-input", admin)
        page.click("#key-use")
        page.wait_for_function("() => document.querySelector('#auth-status').innerText.includes('scope admin')")
        assert [r.split()[0] + " " + r.split("/", 3)[3] for r in page.refused] == ["401 v1/whoami"] * 2  # no key


def test_knee_data_is_drawn_as_a_leg_that_bends_with_the_angle(browser, stack: WebStack) -> None:
    page = Page(browser, stack.gateway.url + "/")
    page.locator("#live-skeleton").wait_for()
    shots = []
    for knee in (0.1, 1.2):  # radians: nearly straight, then bent
        page.evaluate(
            "k => drawSkeleton(document.querySelector('#live-skeleton'),"
            " {model: {joints: ['KNEE_FE']}, points: [{t: 1, pred: [k], truth: [k + 0.2]}]})",
            knee,
        )
        shots.append(pixels(page.locator("#live-skeleton").screenshot()))
    for image in shots:
        assert near(image, PRED) > 200 and near(image, TRUE) > 200, (near(image, PRED), near(image, TRUE))
    assert changed(*shots) > 0.002, "the leg did not bend with the knee angle"
    assert page.errors == [], page.errors


def test_a_recording_uploaded_from_the_page_becomes_a_dataset_to_play(browser, stack: WebStack, synth_folder) -> None:
    page = Page(browser, stack.gateway.url + "/")
    page.locator("#upload-name").wait_for()
    page.fill("#upload-name", "page-upload")
    page.set_input_files("#upload-files", sorted(str(p) for p in synth_folder.iterdir() if p.is_file()))
    page.click("#upload-form button[type=submit]")
    page.wait_for_function("() => / is ready$/.test(document.querySelector('#upload-status').innerText)")
    assert "page-upload" in page.inner_text("#datasets-table")
    assert "page-upload" in page.inner_text("#live-dataset")
    assert page.errors == [] and page.refused == [], (page.errors, page.refused)


def test_swagger_ui_and_redoc_render_from_the_gateways_own_assets(browser, stack: WebStack) -> None:
    for path, rendered in (("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")):
        page = Page(browser, stack.gateway.url + path)
        page.locator(rendered).first.wait_for(timeout=15_000)
        assert "emgpose gateway" in page.locator(rendered).first.inner_text()
        assert page.hosts == {stack.gateway.url.split("/")[2]}, page.hosts  # nothing from another host
        assert page.errors == [] and page.refused == [], (page.errors, page.refused)
