"""A tiny 64×64 RGB run on the real emoji images, through every command that shows pictures, and the explorer in
Chromium with an uploaded image."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import launch_chromium, tiny_config
from tests.test_web import PIXELS, serving
from vaelab.analysis.disentanglement import measure_disentanglement
from vaelab.cli import app
from vaelab.data.datasets import load_split
from vaelab.training import train


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("colour") / "run"
    config = tiny_config(dataset="emoji", train_limit=512, val_limit=128, epochs=1, channels=[8, 16], batch_size=64)
    assert config.model.image_shape == [3, 64, 64] and config.model.stage_widths == [8, 16, 32, 64]
    train(config, run_dir, progress=False, log=lambda message: None)
    return run_dir


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{args}: {result.output} {result.exception!r}"
    return result.output


def colour_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


def test_samples_traversals_and_the_report_of_a_colour_run_are_in_colour(colour_run, tmp_path):
    invoke("sample", colour_run, "-n", 4, "--out", tmp_path / "samples.png")
    samples = colour_png(tmp_path / "samples.png")
    assert samples.shape[-1] == 3
    invoke("reconstruct", colour_run, "-n", 2, "--out", tmp_path / "reconstructions.png")
    colour_png(tmp_path / "reconstructions.png")
    invoke("traverse", colour_run, "--out", tmp_path / "traversal.png")
    traversal = colour_png(tmp_path / "traversal.png")
    assert traversal.shape[1] > traversal.shape[0] / 2  # one row per dimension, eleven steps wide, labelled
    eval_output = invoke("eval", colour_run, "--iw-samples", 2, "--iw-images", 16)
    assert "bits/dim" in eval_output
    invoke("report", colour_run, "--out", tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "emoji" in html and "data:image/png;base64," in html


def test_the_explorer_encodes_an_uploaded_colour_image_in_chromium(colour_run, tmp_path):
    from playwright.sync_api import sync_playwright

    # a real test emoji, saved larger than the dataset's size: the server crops and resizes it as the files were
    test_images = load_split("emoji", "test").images
    most_red = (test_images[:, 0].float() - test_images[:, 2].float()).mean(dim=(1, 2)).argmax()
    emoji = test_images[most_red].permute(1, 2, 0).numpy()
    upload = tmp_path / "emoji.png"
    Image.fromarray(emoji).resize((128, 128), Image.Resampling.NEAREST).save(upload)

    with serving(colour_run) as (host, port), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://{host}:{port}/", wait_until="networkidle")
        assert page.locator("#upload").is_visible() and not page.locator("#draw").is_visible()
        page.set_input_files("#upload-file", str(upload))
        page.wait_for_function(f"""() => ({PIXELS})(document.getElementById("original")) !== null""")
        original = page.eval_on_selector("#original", PIXELS)  # RGBA of what the model saw
        assert page.inner_text("#status") == ""
        browser.close()
    seen = np.asarray(original, dtype=np.uint8).reshape(-1, 4)[:, :3]
    assert seen.std(axis=0).max() > 10  # a picture, not a blank
    assert (np.abs(seen[:, 0].astype(int) - seen[:, 2]) > 30).any()  # colour reached the model, not grey


def test_the_encode_api_prepares_an_uploaded_image_as_the_emoji_files_were(colour_run):
    from vaelab.web.app import Explorer, read_png

    explorer = Explorer.load(colour_run)
    emoji = load_split("emoji", "test").images[0]
    buffer = io.BytesIO()
    Image.fromarray(emoji.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    x = explorer.prepare(read_png(base64.b64encode(buffer.getvalue()).decode()), centre=True)
    assert np.array_equal((x[0] * 255).round().byte().numpy(), emoji.numpy())


def test_an_emoji_run_is_scored_against_its_colour_attributes_and_its_known_skin_tone(colour_run):
    result = measure_disentanglement(colour_run, write=False)
    assert "hue" in result["factors"] and result["images"] > 100
    tone = result["known_factors"]["skin_tone"]
    assert tone["images"] > 20 and 0 <= tone["mig"] <= 1 and 0 <= tone["top_code"] < 32


def test_emoji_directions_fit_the_annotated_skin_tone_read_by_skin_lightness_and_the_vendor_unmeasured(colour_run):
    from vaelab.analysis.directions import analyse_directions, slider_directions

    result = analyse_directions(colour_run, fit_images=600, edit_count=12, out=colour_run / "d.json")
    tone = [d for d in result["directions"] if d["name"] == "skin_tone"]
    assert tone and all(d["fitted_on"] == "encoded" and d["measured_by"] == "skin_lightness" for d in tone)
    assert {d["method"] for d in tone} == {"ridge", "ridge-class-held", "per-class", "local"}  # the category: class
    vendor = next(row for row in result["summary"] if row["attribute"] == "vendor")
    assert vendor["direction_is"] == "not measured" and vendor["rho"] is None and vendor["dim"] is None
    assert next(d for d in result["directions"] if d["name"] == "hue")["measured_by"] == "hue"
    sliders = {row["name"]: row for row in slider_directions(result)}
    assert sliders["vendor"]["rho"] is None and len(sliders["skin_tone"]["unit_vector"]) == 8  # tiny_config's
