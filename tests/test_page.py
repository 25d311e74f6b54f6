"""The web page at / in a real headless Chromium (Debian's, driven by Playwright) against a real server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from .sample import generate
from .test_service import start_server, stop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this closed network refuses
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOT = Path(os.environ.get("TRIPLEX_SCREENSHOT", "")) if os.environ.get("TRIPLEX_SCREENSHOT") else None


@pytest.fixture()
def page_server(trained: tuple[Path, Path]):
    process, url = start_server(trained[1], TRIPLEX_MAX_TEXT_CHARS="300")
    yield url
    stop(process)


@pytest.fixture()
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.fail("no chromium: 'make test' installs Debian's chromium package")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


def test_page_extracts_an_example_and_shows_errors(page_server: str, browser, tmp_path: Path) -> None:
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1100, "height": 1200})
    page.on("requestfinished", lambda request: requests.append(request.url))
    page.goto(page_server)
    page.locator("#examples button.example").first.wait_for()
    buttons = page.locator("#examples button.example")

    def triples_of(text: str) -> list[dict]:
        return httpx.post(f"{page_server}/v1/extract", json={"text": text}).json()["results"][0]["triples"]

    # the first example the model finds triples in (which ones depends on the machine's arithmetic)
    example = next(buttons.nth(n) for n in range(buttons.count()) if triples_of(buttons.nth(n).get_attribute("title")))
    text = example.get_attribute("title")
    example.click()
    page.wait_for_selector("#triples tbody tr")
    expected = triples_of(text)

    rows = page.locator("#triples tbody tr")
    assert rows.count() == len(expected)
    first = rows.first.locator("td").all_inner_texts()
    assert first[:3] == [expected[0]["subject"]["text"], expected[0]["predicate"], expected[0]["object"]["text"]]
    marks = page.locator("mark.entity")
    assert marks.count() >= 1
    for index in range(marks.count()):  # each highlight covers exactly its characters of the text
        mark = marks.nth(index)
        start, end = int(mark.get_attribute("data-start")), int(mark.get_attribute("data-end"))
        assert mark.inner_text() == text[start:end] and mark.get_attribute("data-type")
    entity_texts = {t[role]["text"] for t in expected for role in ("subject", "object")}
    assert page.locator("#highlighted").inner_text() == text
    assert all(page.locator("#graph").inner_html().count(name) for name in entity_texts)
    assert " ms" in page.locator("#status").inner_text()
    page.screenshot(path=str(SCREENSHOT or tmp_path / "page.png"), full_page=True)

    page.fill("#text", "x" * 301)
    page.click("#extract")
    page.wait_for_selector("#status.error")
    assert "too long" in page.locator("#status").inner_text() and "300" in page.locator("#status").inner_text()
    assert page.locator("#answer").is_hidden()
    assert all(url.startswith(page_server) for url in requests), "the page must load nothing from elsewhere"


def test_page_asks_for_the_api_key(trained: tuple[Path, Path], browser) -> None:
    process, url = start_server(trained[1], TRIPLEX_API_KEY="sesame")
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#status.error")
        assert "API key" in page.locator("#status").inner_text() and page.locator("#api-key").is_visible()
        page.fill("#api-key", "sesame")
        page.dispatch_event("#api-key", "change")
        page.locator("#examples button.example").first.wait_for()
        page.locator("#examples button.example").first.click()
        page.wait_for_function("document.getElementById('status').textContent.includes(' ms')")
        assert page.locator("#status.error").count() == 0 and page.locator("#answer").is_visible()
        # the same key again (the field losing focus fires change once more) must not reload and wipe the answer
        page.dispatch_event("#api-key", "change")
        page.wait_for_timeout(500)
        assert " ms" in page.locator("#status").inner_text() and page.locator("#answer").is_visible()
    finally:
        stop(process)


def test_docs_and_redoc_load_offline(page_server: str, browser) -> None:
    for path, selector in (("/docs", ".swagger-ui .info"), ("/redoc", "redoc h1, [role='main'] h1, .api-info h1")):
        requests: list[str] = []
        page = browser.new_page()
        page.on("requestfinished", lambda request, seen=requests: seen.append(request.url))
        page.goto(page_server + path)
        page.wait_for_selector(selector, timeout=20_000)
        assert all(url.startswith((page_server, f"blob:{page_server}", "data:")) for url in requests), requests
    page = browser.new_page()
    page.goto(page_server + "/docs")
    page.wait_for_selector(".swagger-ui .authorize")  # the bearer scheme gives an Authorize button


def test_highlights_count_characters_as_the_api_does(page_server: str, browser, tmp_path: Path) -> None:
    """Emoji, a ZWJ sequence and a mathematical letter (each outside the BMP: two UTF-16 units in the page)
    before and between the entities: every highlight still shows its entity's own text."""
    plain = next(e for e in generate(40, seed=7) if e.triples)
    first = min(plain.triples, key=lambda t: t.subject.start).subject
    text = f"😀 👩‍💻 𝐀 {plain.text[: first.end]} 𝐀😀 {plain.text[first.end :]} 👩‍💻"
    answer = httpx.post(f"{page_server}/v1/extract", json={"text": text}).json()["results"][0]["triples"]
    entities = {(e["start"], e["end"]): e["text"] for t in answer for e in (t["subject"], t["object"])}
    assert any(start > text.index("𝐀😀") for start, _ in entities), "no entity after the second group"
    page = browser.new_page()
    page.goto(page_server)
    page.fill("#text", text)
    page.click("#extract")
    page.wait_for_selector("#highlighted mark.entity")
    marks = page.locator("mark.entity")
    shown = {(int(m.get_attribute("data-start")), int(m.get_attribute("data-end"))): m.inner_text()
             for m in marks.all()}  # fmt: skip
    assert shown == entities  # the sample's entities do not overlap, so each mark is one entity
    assert page.locator("#highlighted").inner_text() == text
    page.screenshot(path=str(SCREENSHOT.with_name("page-emoji.png") if SCREENSHOT else tmp_path / "emoji.png"))
