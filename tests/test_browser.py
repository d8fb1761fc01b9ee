"""The web pages in a real browser: Debian's Chromium driven by Playwright, against `make run` (scripts/run_local.py
with its own local stack).

The playground is loaded from its own origin (another port than the API's), so every API call is a CORS request
and the photo goes to storage through the signed PUT, checked by the local storage front as Cloud Storage checks
it. Screenshots are kept under .local/browser/ (git-ignored) as test artifacts.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.photos import phone_jpeg

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".local" / "browser"
# Headless Chromium has no GPU here: WebGL (model-viewer's renderer) runs on SwiftShader.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (make test installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def playground_url(api: str) -> str:
    """The playground's address, as the dev server's index page links it."""
    index = requests.get(f"{api}/", timeout=10)
    assert index.status_code == 200 and "text/html" in index.headers["Content-Type"]
    match = re.search(r'<a href="([^"]+)">Playground</a>', index.text)
    assert match, index.text
    return match.group(1)


def test_the_index_links_the_docs_and_the_playground(live_server):
    page = requests.get(f"{live_server}/", timeout=10).text
    assert 'href="/docs"' in page and 'href="/openapi"' in page
    assert _origin(playground_url(live_server)) != _origin(live_server)


def test_docs_render_the_openapi_document_from_this_origin_only(browser, live_server):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        answer = page.goto(f"{live_server}/docs")
        assert answer is not None and answer.status == 200
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        page.get_by_text("Create an account").first.wait_for(timeout=60_000)
        page.get_by_role("heading", name=re.compile("Zipkku API")).first.wait_for()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs.png"))
    finally:
        page.close()
    foreign = [url for url in requested if not url.startswith((live_server, "data:", "blob:"))]
    assert foreign == [], f"the docs page must load nothing from another origin (no CDN): {foreign}"
    assert problems == [], problems


def test_playground_journey_in_chromium(browser, live_server, tmp_path):
    """Sign up, upload a phone photo through the signed PUT, generate, see boxes, product cards and a loaded 3D
    model, save it to the library, read the notification, delete it."""
    url = playground_url(live_server)
    photo = tmp_path / "IMG_0042.jpg"
    photo.write_bytes(phone_jpeg(3024, 2268, orientation=6))  # a portrait phone photo, rotated by EXIF
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(_origin(request.url)))
    try:
        page.goto(url)
        assert _origin(page.url) != _origin(live_server)
        email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
        page.fill("#email", email)
        page.fill("#password", "a long browser password")
        page.fill("#name", "Browser")
        page.click("#signup-btn")
        page.locator("#signed-in").wait_for(state="visible", timeout=30_000)
        assert email in page.inner_text("#who")

        page.set_input_files("#photo", str(photo))
        page.wait_for_selector("#generate-btn:not([disabled])", timeout=90_000)
        ready = re.search(r"Ready: (\d+)×(\d+) px", page.inner_text("#upload-status"))
        assert ready and int(ready[1]) < int(ready[2])  # stored upright: the EXIF orientation was applied

        page.fill("#prompt", "warm light, oak floor")
        page.fill("#variants", "1")
        page.click("#generate-btn")
        page.wait_for_selector(".variant .box", timeout=240_000)
        assert page.eval_on_selector("#progress", "p => p.value") == 100
        boxes = page.locator(".variant .box")
        assert boxes.count() >= 1
        frame = page.locator(".variant-frame").first.bounding_box()
        box = boxes.first.bounding_box()
        assert frame and box and box["width"] > 0 and box["x"] >= frame["x"] - 1  # drawn over the variant
        card = page.locator(".product-card").first
        assert re.search(r"\d", card.locator(".price").inner_text())
        assert re.search(r"W \d+ cm × D \d+ cm × H \d+ cm", card.locator(".dimensions").inner_text())
        assert card.locator("a").get_attribute("href").startswith("http")
        # model-viewer loads a model once it comes into view
        page.locator("model-viewer").first.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => [...document.querySelectorAll('model-viewer')].some(m => m.loaded)", timeout=90_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # the first variant: its image with the boxes, its product cards and 3D models (a generous timeout: WebGL
        # renders in software here, slowly on a busy machine)
        page.locator(".variant").first.screenshot(path=str(ARTIFACTS / "playground.png"), timeout=120_000)

        page.click("#save-btn")
        page.wait_for_selector(".library-item:has-text('saved')", timeout=30_000)
        page.click("#library-refresh")
        # interior.finished is recorded right after `done`: reload the account until the notification is there
        page.wait_for_function(
            """async () => { document.getElementById('read-all-btn').click();
                             await new Promise(r => setTimeout(r, 300));
                             return document.querySelectorAll('#notification-list li').length > 0; }""",
            timeout=30_000, polling=500)
        page.wait_for_function("() => document.getElementById('unread').textContent === '0'", timeout=30_000)
        assert "is ready" in page.inner_text("#notification-list")
        page.click(".library-item .delete")
        page.wait_for_function("() => !document.querySelector('.library-item')", timeout=30_000)
        assert page.locator("#error").is_hidden(), page.inner_text("#error")
    finally:
        context.close()
    assert problems == [], problems
    assert _origin(live_server) in origins and len(origins) >= 3  # page, API and storage: three origins


def test_docs_serves_its_files_with_caching_and_refuses_others(fn):
    client = fn("docs")
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    bundle = client.get("/?file=swagger-ui-bundle.js")
    assert bundle.status_code == 200 and bundle.mimetype == "text/javascript"
    again = client.get("/?file=swagger-ui-bundle.js", headers={"If-None-Match": bundle.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/?file=openapi.json").get_json() == fn("openapi").get("/").get_json()
    for name in ("../main.py", "static/swagger-ui-bundle.js", "nope"):
        refused = client.get("/", query_string={"file": name})
        assert refused.status_code == 400 and refused.get_json()["error"]["details"][0]["field"] == "file"
