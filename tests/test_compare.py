"""`vaelab compare`: a VAE, a GAN and a DDPM measured by the same code into compare.json and a self-contained
compare.html; runs of different datasets and missing runs are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import launch_chromium, tiny_config
from vaelab.analysis.samplers import GMM_FILE, TWO_STAGE_FILE
from vaelab.errors import VaelabError
from vaelab.models.registry import model_label
from vaelab.report.compare import CACHE, COMPARE_HTML, COMPARE_JSON, check_runs, compare_runs
from vaelab.rundir import BEST, load_tensors, save_tensors


def digests(folder: Path) -> dict[str, str]:
    """Every file under `folder`, by relative path: its SHA-256."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def compared(trained_run, gan_run, ddpm_run, tmp_path_factory) -> tuple[Path, dict, list[Path], dict, dict]:
    """Copies of the three runs as training left them (no sampler fitted into them by another test), compared:
    the output folder, compare.json, the runs, and every file of the runs digested before and after."""
    runs, folder = [], tmp_path_factory.mktemp("compared")
    for name, run in (("vae", trained_run), ("gan", gan_run), ("ddpm", ddpm_run)):
        runs.append(folder / name)
        shutil.copytree(run, runs[-1], ignore=shutil.ignore_patterns("sampler-*", "eval.json", "generation.json"))
    before = {str(run): digests(run) for run in runs}
    out = tmp_path_factory.mktemp("compare")
    result = compare_runs(runs, out, samples=200, inception=False, iw_samples=5, iw_images=50, steps=5)
    return out, result, runs, before, {str(run): digests(run) for run in runs}


@pytest.fixture(scope="module")
def comparison(compared) -> tuple[Path, dict]:
    return compared[0], compared[1]


def test_compare_writes_both_files_with_every_run_measured_the_same_way(comparison):
    out, result = comparison
    assert json.loads((out / COMPARE_JSON).read_text()) == result
    assert (out / COMPARE_HTML).is_file()
    families = [run["family"] for run in result["runs"]]
    assert families == [run["model"] for run in result["runs"]] == ["vae", "gan", "ddpm"]
    assert result["runs"][1]["latent"] is None  # a GAN has no eval.json with a KL
    vae, gan, ddpm = result["runs"]
    for run in result["runs"]:
        for entry in run["generation"].values():
            assert entry["samples"] == 200 and entry["seed"] == result["seed"]
        assert run["training"]["train_seconds"] > 0 and run["parameters"] > 0
    assert set(vae["generation"]) == {"prior", "gmm", "two-stage"} and set(gan["generation"]) == {"prior"}
    assert ddpm["generation"]["prior"]["ddim_steps"] == 5
    assert vae["likelihood"]["kind"].startswith("IWAE") and gan["likelihood"] is None
    assert ddpm["likelihood"]["estimate"] is True
    assert set(ddpm["sampling_ms_per_image"]) == {"ddim_10", "ddim_25", "ddim_50", "ancestral"}
    # DDIM's cost grows with its steps; the full chain (100 steps here) costs the most.
    costs = ddpm["sampling_ms_per_image"]
    assert costs["ddim_10"] < costs["ddim_50"] < costs["ancestral"]
    assert [run["offers"]["encoder"] for run in result["runs"]] == ["q(z|x)", "none", "DDIM inversion (deterministic)"]
    assert gan["interpolation"]["from"] == "random:1" and ddpm["interpolation"]["mode"] == "slerp"
    assert len(result["trade"]) == 4 and result["trade"][0].startswith("Blur:")


@pytest.mark.slow  # four comparisons, each against the 10,000 test images
def test_a_comparison_started_again_reuses_each_run_measured_with_the_same_weights_and_settings(gan_run, tmp_path):
    run = tmp_path / "gan"
    shutil.copytree(gan_run, run)
    out = tmp_path / "compare"

    def compare(samples: int = 50) -> tuple[dict, list[str]]:
        messages: list[str] = []
        result = compare_runs([run], out, samples=samples, inception=False, log=messages.append)
        return result, messages

    first, messages = compare()
    assert not any("reused" in message for message in messages)
    again, messages = compare()
    assert any(message.endswith("reused") for message in messages)
    assert again["runs"] == first["runs"]
    _, messages = compare(samples=60)  # another setting: measured anew
    assert not any("reused" in message for message in messages)
    tensors, metadata = load_tensors(run / BEST)
    name = next(n for n, t in tensors.items() if n.startswith("generator.") and t.is_floating_point())
    save_tensors(run / BEST, {**tensors, name: tensors[name] + 0.01}, metadata)  # other weights: measured anew
    changed, messages = compare()
    assert not any("reused" in message for message in messages)
    assert changed["runs"][0]["generation"] != first["runs"][0]["generation"]


def test_compare_leaves_every_file_of_the_runs_it_compares_byte_identical(compared):
    out, _, runs, before, after = compared
    assert after == before
    assert all(not (run / GMM_FILE).exists() and not (run / TWO_STAGE_FILE).exists() for run in runs)
    # What it fitted lies under its own folder: the VAE's two samplers, in OUT/cache/NAME-DIGEST/.
    fitted = sorted(path.relative_to(out / CACHE) for path in (out / CACHE).rglob("*") if path.is_file())
    assert [path.name for path in fitted] == [GMM_FILE, TWO_STAGE_FILE]
    assert fitted[0].parent == fitted[1].parent and fitted[0].parent.name.startswith(runs[0].name + "-")


def test_a_comparison_with_other_settings_reuses_the_samplers_it_fitted(compared, tmp_path):
    out, _, runs, before, _ = compared
    shutil.copytree(out, tmp_path / "again")
    messages: list[str] = []
    compare_runs([runs[0]], tmp_path / "again", samples=50, inception=False, iw_samples=5, iw_images=50,
                 log=messages.append)
    assert not any(message.startswith(("fitting", "second stage")) for message in messages)
    assert digests(tmp_path / "again" / CACHE) == digests(out / CACHE) and digests(runs[0]) == before[str(runs[0])]


def test_compare_refuses_runs_on_different_datasets_and_a_missing_run(gan_run, tmp_path):
    other = tmp_path / "fashion-gan"
    shutil.copytree(gan_run, other)
    config = json.loads((other / "config.json").read_text())
    config["data"]["dataset"] = "fashion-mnist"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(VaelabError, match=r"runs on different datasets cannot be compared: .*\(mnist\), .*"
                                          r"\(fashion-mnist\)"):
        check_runs([gan_run, other])
    with pytest.raises(VaelabError, match="does not exist"):
        check_runs([gan_run, tmp_path / "nowhere"])


def test_the_compare_page_opens_with_every_image_loaded_and_no_outside_request(comparison):
    from playwright.sync_api import sync_playwright

    out, _ = comparison
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto((out / COMPARE_HTML).as_uri(), wait_until="load")
        images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        text = page.inner_text("body")
        browser.close()
    assert len(images) == 6 and all(images)  # a sample grid and an interpolation per run
    assert "The trade, measured" in text and "What each offers" in text
    assert [url for url in requests if not url.startswith(("file://", "data:"))] == []


def test_the_model_label_names_what_sets_a_run_apart_from_its_family():
    assert model_label(tiny_config().model) == "vae"
    assert model_label(tiny_config(prior="vamp", prior_components=50).model) == "vae + VampPrior (50)"
    assert model_label(tiny_config(family="cvae", decoder="pixelcnn", pixelcnn_layers=5).model) == (
        "cvae + PixelCNN decoder (5 layers)")
