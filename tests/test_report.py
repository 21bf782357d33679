"""The report is one self-contained file: opened from disk in a real headless Chromium, every image loads and
the page asks for nothing outside itself."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import launch_chromium
from vaelab.analysis.disentanglement import measure_disentanglement
from vaelab.analysis.factors import analyse_factors
from vaelab.config import RunConfig
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.latents import WEAK_KL_NATS
from vaelab.report.figures import DPI, figure_png, kl_heatmap_figure
from vaelab.report.html import (
    TABLE_FRAMES,
    _limitations,
    active_text,
    build_report,
    confidence_note,
    headline_rows,
    html_table,
    published_anchor,
)

LEGIBLE_PX = 9  # the smallest text the report may show, in CSS pixels
FRAME_PX = 40  # the smallest traversal frame the factor table may show

CORE_SECTIONS = ("Summary", "Configuration", "Training curves", "Evaluation on the test split", "Prior samples",
                 "Reconstructions", "Latent traversals", "What each dimension controls",
                 "Disentanglement against measured attributes", "Latent maps", "Limitations (measured)")
CONDITIONAL_SECTIONS = ("Class-conditioned samples", "Restyle", "Style dimensions written as every class")


def with_small_analyses(run: Path) -> Path:
    """The run with the eval.json and factors.json the report reads, computed on few images: the report itself
    would compute them at full size (IWAE on 1,000 images, factors from 200 bases), which the test does not need."""
    evaluate_run(run, iw_samples=10, iw_images=100, test_limit=500, probe_images=500, class_samples=50)
    analyse_factors(run, bases=10, steps=7)
    measure_disentanglement(run, images=500)
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
    assert "<h2>Posterior collapse" not in page  # the small model uses its latent
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
    assert headings == (13 if which == "report" else 15)  # the core sections (directions too), and the conditional ones
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


def test_every_table_column_has_a_tooltip_and_a_legend_line_runs_of_one_meaning_share_a_line():
    table = html_table(["class", "0", "1", "2"], [["ρ", "+0.5", "+0.6", "+0.7"]],
                       ["what the row measures", "ρ in this class", "ρ in this class", "ρ in this class"])
    assert re.findall(r'<th title="([^"]+)">', table) == ["what the row measures", *["ρ in this class"] * 3]
    assert re.findall(r"<li><b>(.*?)</b>: (.*?)</li>", table) == [("class", "what the row measures"),
                                                                  ("0 … 2", "ρ in this class")]
    with pytest.raises(ValueError):
        html_table(["a", "b"], [], ["only one meaning"])


def test_the_interpolation_note_compares_the_measured_confidences_and_says_what_confidence_is_not():
    crossfade_ahead = confidence_note({"linear": 0.8, "slerp": 0.7}, 0.9)
    assert "cross-fade has 90% confident frames" in crossfade_ahead
    assert "80% (linear) and 70% (slerp)" in crossfade_ahead
    assert "does not make it the better path" in crossfade_ahead
    assert "mostly one image or the other at every frame" in crossfade_ahead and "not how smoothly" in crossfade_ahead
    latent_ahead = confidence_note({"linear": 0.64}, 0.45)
    assert "latent path has 64% (linear) confident frames against 45%" in latent_ahead
    assert "better path" not in latent_ahead and "not how smoothly" in latent_ahead


def test_active_dimensions_under_the_weak_kl_are_marked_and_counted_as_weak():
    rows = [{"dim": d, "kl": kl, "active": active, "name": "entangled", "mi_with_class": 0.0, "smoothness_ratio": 1.1}
            for d, (kl, active) in enumerate([(2.0, True), (WEAK_KL_NATS / 2, True), (0.001, False)])]
    assert [active_text(row) for row in rows] == ["yes", f"yes, weak (< {WEAK_KL_NATS:g} nats)", "no"]
    evaluation = {"latent_dim": 3, "active_units": 2}
    text = _limitations(evaluation, rows, 0.05, 0.1, [10.0, 20.0], ("a", "b"), 30)
    assert f"Weak dimensions: 1 of 2 active dimensions carry under {WEAK_KL_NATS:g} nats" in text
    assert "on the first 30 test images" in text  # the images measured, not a limit asked for


def test_the_kl_heat_map_labels_every_one_of_32_dimensions_legibly_without_overlap():
    rng = np.random.default_rng(0)
    history = [{"epoch": epoch, "val_kl_per_dim": rng.exponential(1.0, 32).tolist()} for epoch in range(1, 21)]
    figure = kl_heatmap_figure(history)
    labels = figure.axes[0].get_yticklabels()
    renderer = figure.canvas.get_renderer()
    boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda box: box.y0)

    assert sorted(label.get_text() for label in labels) == sorted(f"z{d}" for d in range(32))
    assert min(label.get_fontsize() for label in labels) * DPI / 72 >= LEGIBLE_PX  # points → pixels of the PNG
    assert all(lower.y1 <= upper.y0 for lower, upper in zip(boxes, boxes[1:], strict=False))
    width = Image.open(io.BytesIO(figure_png(figure))).width
    assert width <= 1000  # narrower than the report's column: shown at its own size, never scaled down


def test_the_report_explains_every_table_column_and_the_interpolation_confidence(report):
    page = report.read_text()
    assert "<th>" not in page  # every heading carries its meaning as a tooltip …
    assert page.count("<table>") == page.count("</table></div><ul class='legend'>") >= 3  # … and a legend line
    assert "<b>confident frames</b>: share of traversal frames" in page and "<b>its weakest class ρ</b>" in page
    assert "Confident frames measure how much each frame looks like a training image" in page
    assert "Weak dimensions:" in page


def test_the_report_shows_traversal_frames_and_kl_labels_large_enough_to_read_in_chromium(report):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(report.as_uri(), wait_until="load")
        sizes = page.eval_on_selector_all(
            "img", "els => els.map(e => ({alt: e.alt, shown: e.getBoundingClientRect().width, own: e.naturalWidth}))"
        )
        browser.close()
    strips = [size for size in sizes if size["alt"].startswith("traversal of z")]
    assert strips and min(size["shown"] for size in strips) / TABLE_FRAMES >= FRAME_PX
    heat_map = next(size for size in sizes if size["alt"] == "KL per dimension")
    assert heat_map["shown"] == heat_map["own"]  # the labels drawn at ≥ 9 px (test above) are shown at that size


# --- the summary first, the configuration last, and no table wider than the window -----------------------------------

# Where the page's parts are: the headings in order, whether the summary comes before the configuration and the
# configuration sits folded in a <details> of the last section, and what the summary shows.
OPENING = """() => {
    const sections = [...document.querySelectorAll("section")];
    const summary = sections.find((s) => s.querySelector("h2").textContent === "Summary");
    const config = document.querySelector("pre");
    const details = config.closest("details");
    return {
        headings: sections.map((s) => s.querySelector("h2").textContent),
        summaryFirst: Boolean(summary.compareDocumentPosition(config) & Node.DOCUMENT_POSITION_FOLLOWING),
        configFolded: details !== null && !details.open && details.closest("section") === sections.at(-1),
        summaryText: summary.innerText,
        summaryImages: [...summary.querySelectorAll("img")].map((img) => ({alt: img.alt, ok: img.naturalWidth > 0})),
        summaryTop: summary.getBoundingClientRect().top,
    };
}"""


def test_the_report_opens_with_the_summary_and_ends_with_the_configuration_folded_in_details(report, trained_run):
    from playwright.sync_api import sync_playwright

    evaluation = json.loads((trained_run / "eval.json").read_text())
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1024, "height": 900})
        page.goto(report.as_uri(), wait_until="load")
        opening = page.evaluate(OPENING)
        browser.close()
    assert opening["headings"][0] == "Summary" and opening["headings"][-1] == "Configuration (appendix)"
    assert opening["summaryFirst"] and opening["configFolded"]
    assert opening["summaryTop"] < 900  # the summary starts on the first screen
    text = opening["summaryText"]
    for shown in ("What was trained on what", "vae (β-VAE, β 1)", "mnist, 1×28×28 images, binarized", "bernoulli",
                  "8 dimensions", "4 epochs", "training time", f"{evaluation['elbo']:.2f} nats",
                  f"{evaluation['iwae']['nll']:.2f} nats", f"{evaluation['active_units']} of 8",
                  "Strongest measured factors"):
        assert shown in text, shown
    # A plain VAE on dynamically binarized MNIST under a Bernoulli likelihood: the published NLL stands beside its own.
    assert "86.76 nats: VAE, 1 stochastic layer, IWAE-5000 (Burda et al. 2016, Table 1)" in text
    assert {"summary samples"} <= {image["alt"] for image in opening["summaryImages"]}
    assert all(image["ok"] for image in opening["summaryImages"])


def test_the_summary_lists_the_named_factors_with_the_largest_rho_first(report, trained_run):
    named = [row for row in json.loads((trained_run / "factors.json").read_text())
             if row["active"] and row["name"] not in ("entangled", "class/shape", "weak")]
    summary = report.read_text().split("<h2>Summary</h2>")[1].split("</section>")[0]
    shown = re.findall(r"<td>z(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>", summary)
    expected = sorted(named, key=lambda row: -abs(row["top_rho"]))[:5]
    assert expected  # the tiny model names a dimension after an attribute (test_factors.py)
    assert [(int(dim), attribute, float(rho)) for dim, attribute, rho in shown] == [
        (row["dim"], row["top_attribute"], round(row["top_rho"], 2)) for row in expected]


# Every table's right edge, and that of the box that scrolls it where one does (overflow-x auto or scroll), against
# the window; how wide the page is; and the right edge of every traversal frame of the factor table against the
# box it scrolls in (what shows without scrolling sideways).
TABLE_EDGES = """() => {
    const scrollBox = (element) => {
        for (let box = element.parentElement; box !== document.body; box = box.parentElement) {
            if (["auto", "scroll"].includes(getComputedStyle(box).overflowX)) return box;
        }
        return null;
    };
    const tables = [...document.querySelectorAll("table")].map((table) => {
        const box = scrollBox(table);
        return {head: table.querySelector("th").textContent, right: table.getBoundingClientRect().right,
                boxRight: box === null ? null : box.getBoundingClientRect().right};
    });
    const traversals = [...document.querySelectorAll("img[alt^='traversal of z']")].map((img) => ({
        right: img.getBoundingClientRect().right, boxRight: scrollBox(img).getBoundingClientRect().right}));
    return {tables, traversals, pageWidth: document.documentElement.scrollWidth, window: innerWidth};
}"""


@pytest.mark.parametrize("width", [1024, 390])
@pytest.mark.parametrize("which", ["report", "cvae_report"])
def test_every_table_fits_the_window_or_scrolls_in_its_own_box_and_the_page_never_scrolls_sideways(
    which, width, request
):
    report = request.getfixturevalue(which)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(report.as_uri(), wait_until="load")
        page.eval_on_selector("details", "details => { details.open = true; }")  # the configuration's lines too
        edges = page.evaluate(TABLE_EDGES)
        browser.close()
    assert edges["window"] == width and edges["pageWidth"] <= width
    assert len(edges["tables"]) >= 6
    cut = [table["head"] for table in edges["tables"]
           if table["right"] > width and (table["boxRight"] is None or table["boxRight"] > width)]
    assert cut == []
    if width >= 1024:  # on a laptop the factor table's traversals show whole; its numbers may scroll in its box
        assert edges["traversals"] and all(frame["right"] <= frame["boxRight"] for frame in edges["traversals"])


def test_a_published_anchor_stands_only_beside_a_run_measured_like_for_like():
    plain = RunConfig()  # a VAE on dynamically binarized MNIST, Bernoulli likelihood, β 1
    assert plain.data.input_mode == "binarized" and plain.model.likelihood == "bernoulli"
    assert published_anchor("nll", plain).value == 86.76
    for unlike in ({"beta": 4.0}, {"free_bits": 0.5}, {"prior": "vamp"}, {"input_mode": "intensities",
                                                                             "likelihood": "gaussian"}):
        assert published_anchor("nll", plain.with_overrides(unlike)) is None, unlike
    fashion = plain.with_overrides({"dataset": "fashion-mnist"})
    assert published_anchor("nll", fashion) is None  # no published NLL of binarized Fashion-MNIST in the table
    assert published_anchor("fid prior", fashion).value == 43.6
    assert published_anchor("fid two-stage", fashion).value == 29.3
    assert published_anchor("fid gmm", fashion) is None
    assert published_anchor("m2 test error", plain.with_overrides({"family": "m2", "labels": 100})).value == 11.97
    assert published_anchor("m2 test error", plain.with_overrides({"family": "m2", "labels": 600})) is None

    evaluation = {"elbo": -95.0, "bits_per_dim_elbo": 0.175, "active_units": 20, "latent_dim": 32}

    def fid(samples: int) -> dict:
        return {"fid_inception": 18.2, "inception_samples": samples, "inception_reference_images": 10_000,
                "fid_inception_protocol": f"{samples:,} samples"}

    rows = headline_rows(plain, evaluation, {"samplers": {"prior": fid(10_000), "two-stage": fid(1_000)}})
    published = {row[0]: row[2] for row in rows}
    assert published["FID (Inception), prior samples"] == "16.6: VAE (Dai & Wipf 2019, Table 1)"
    assert published["FID (Inception), two-stage samples"] == "–"  # 1,000 samples: biased upward, not comparable
    assert [row[1] for row in headline_rows(plain, evaluation, None) if row[0] == "FID (Inception)"] == [
        "not measured (`vaelab generation RUN` measures it)"]
