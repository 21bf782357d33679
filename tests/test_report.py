"""The report is one self-contained file: opened from disk in a real headless Chromium, every image loads and
the page asks for nothing outside itself."""

from pathlib import Path

import pytest

from tests.conftest import launch_chromium
from vaelab.report.html import build_report


@pytest.fixture(scope="module")
def report(trained_run, tmp_path_factory) -> Path:
    return build_report(trained_run, tmp_path_factory.mktemp("report") / "report.html")


def test_report_holds_every_section_and_no_external_reference(report):
    page = report.read_text()
    for title in ("Configuration", "Training curves", "Evaluation on the test split", "Prior samples",
                  "Reconstructions", "Latent traversals", "What each dimension controls", "Interpolations",
                  "Latent maps", "Limitations (measured)"):
        assert f"<h2>{title}" in page, title
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") >= 10


def test_report_opens_in_headless_chromium_with_every_image_loaded_and_no_outside_request(report):
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report.as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => ({ok: e.complete && e.naturalWidth > 0, alt: e.alt}))"
        )
        headings = page.eval_on_selector_all("h2", "els => els.length")
        browser.close()
    assert len(images) >= 10 and all(image["ok"] for image in images), [i for i in images if not i["ok"]]
    assert headings == 10
    outside = [url for url in requests if not url.startswith(("file://", "data:"))]
    assert outside == []
