"""The report is one self-contained file: opened from disk in a real headless Chromium, every image loads and
the page asks for nothing outside itself."""

import json
from pathlib import Path

import pytest

from tests.conftest import launch_chromium
from vaelab.analysis.factors import analyse_factors
from vaelab.evaluation import evaluate_run
from vaelab.report.html import build_report

CORE_SECTIONS = ("Configuration", "Training curves", "Evaluation on the test split", "Prior samples",
                 "Reconstructions", "Latent traversals", "What each dimension controls", "Latent maps",
                 "Limitations (measured)")
CONDITIONAL_SECTIONS = ("Class-conditioned samples", "Restyle", "Style dimensions written as every class")


def with_small_analyses(run: Path) -> Path:
    """The run with the eval.json and factors.json the report reads, computed on few images: the report itself
    would compute them at full size (IWAE on 1,000 images, factors from 200 bases), which the test does not need."""
    evaluate_run(run, iw_samples=10, iw_images=200, test_limit=2000, probe_images=2000, class_samples=100)
    analyse_factors(run, bases=20, steps=7)
    return run


@pytest.fixture(scope="module")
def report(trained_run, tmp_path_factory) -> Path:
    return build_report(with_small_analyses(trained_run), tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="module")
def cvae_report(cvae_run, tmp_path_factory) -> Path:
    return build_report(with_small_analyses(cvae_run), tmp_path_factory.mktemp("report") / "cvae.html")


def test_report_holds_every_section_and_no_external_reference(report):
    page = report.read_text()
    for title in (*CORE_SECTIONS, "Interpolations"):
        assert f"<h2>{title}" in page, title
    for title in CONDITIONAL_SECTIONS:
        assert f"<h2>{title}" not in page, title
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count("data:image/png;base64,") >= 10


def test_cvae_report_adds_class_grid_restyle_and_style_sections_and_per_class_correlations(cvae_report, cvae_run):
    page = cvae_report.read_text()
    active = [row for row in json.loads((cvae_run / "factors.json").read_text()) if row["active"]]
    for title in (*CORE_SECTIONS, *CONDITIONAL_SECTIONS):
        assert f"<h2>{title}" in page, title
    assert "<h2>Interpolations" not in page  # a cvae path between two digits changes only the style
    assert "conditional accuracy" in page and "its weakest class ρ" in page
    assert page.count("(test images of this class)") == min(3, len(active))  # a ρ table per style dimension shown
    assert page.count('alt="restyled test image') == 5


@pytest.mark.parametrize("which", ["report", "cvae_report"])
def test_report_opens_in_headless_chromium_with_every_image_loaded_and_no_outside_request(which, request):
    report = request.getfixturevalue(which)
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
    assert headings == (10 if which == "report" else 12)
    outside = [url for url in requests if not url.startswith(("file://", "data:"))]
    assert outside == []


@pytest.mark.parametrize(
    ("which", "sections", "absent"),
    [
        ("gan_run", ("Samples (z ~ N(0, I))", "Latent traversals of the first 16 dimensions",
                     "Interpolations between random:1 and random:2"), ("Reconstructions", "Latent maps")),
        ("ddpm_run", ("Samples (DDIM, 10 steps)", "Reconstructions by DDIM inversion",
                      "Interpolations between test:0 and test:1"), ("Latent traversals", "Latent maps")),
    ],
)
def test_the_report_of_a_family_without_a_likelihood_shows_what_it_can_do(which, sections, absent, request, tmp_path):
    run = request.getfixturevalue(which)
    evaluate_run(run, iw_images=20)
    page = build_report(run, tmp_path / "report.html").read_text()
    for title in ("Configuration", "Training curves", "Evaluation on the test split", *sections):
        assert f"<h2>{title}" in page, title
    for title in absent:
        assert f"<h2>{title}" not in page, title
    assert "ELBO" not in page and ("variational bound (estimate)" in page) == (which == "ddpm_run")
