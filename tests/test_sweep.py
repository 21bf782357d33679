"""The sweep: a 2-β sweep on a small real slice trains, evaluates and reports, and rerunning it skips what is done;
a sweep over objectives sets likelihood against disentanglement."""

import json

import pytest

from tests.conftest import TINY
from vaelab.config import RunConfig
from vaelab.errors import VaelabError
from vaelab.pipelines.sweep import SweepSettings, parse_weights, run_sweep, sweep_points
from vaelab.training.checkpoint import write_config

SETTINGS = SweepSettings(epochs=1, samples=100, inception_samples=0, iw_samples=5, iw_images=50, factor_bases=4,
                         metric_images=300)


def test_a_two_beta_sweep_writes_its_report_and_a_rerun_skips_finished_runs(tmp_path):
    out = tmp_path / "sweep"
    overrides = {**TINY, "train_limit": 1024}
    summary = run_sweep(out, [0.5, 2.0], SETTINGS, overrides=overrides, log=lambda m: None)
    assert [row["beta"] for row in summary["runs"]] == [0.5, 2.0]
    assert all(step == "trained" for step in (s["train"] for s in summary["steps"].values()))
    # Same seed and data, only β differs: the stronger KL weight buys a lower rate.
    low, high = summary["runs"]
    assert high["kl"] < low["kl"]
    stored = json.loads((out / "sweep.json").read_text())
    assert stored["runs"] == summary["runs"] and stored["config"]["train"]["seed"] == 0
    page = (out / "sweep.html").read_text()
    for title in ("Rate–distortion", "Likelihood against disentanglement", "Metrics against β", "Numbers",
                  "Samples and traversals side by side"):
        assert f"<h2>{title}" in page
    assert page.count("data:image/png;base64,") == 3 + 2 * 2
    assert "http://" not in page and "https://" not in page and "<script" not in page

    weights = out / "beta-0.5" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = run_sweep(out, [0.5, 2.0], SETTINGS, overrides=overrides, log=lambda m: None)
    assert all(state == "skipped" for steps in again["steps"].values() for state in steps.values())
    assert weights.stat().st_mtime_ns == before and again["runs"] == summary["runs"]


def test_a_sweep_refuses_to_reuse_a_directory_trained_with_other_settings(tmp_path):
    out = tmp_path / "sweep"
    (out / "beta-1").mkdir(parents=True)
    write_config(out / "beta-1", RunConfig().with_overrides({**TINY, "latent_dim": 4, "beta": 1.0, "epochs": 1}))
    with pytest.raises(VaelabError, match="holds a run with other settings"):
        run_sweep(out, [1.0], SETTINGS, overrides=TINY, log=lambda m: None)


@pytest.mark.slow  # two runs scored for disentanglement; the two-β sweep covers the pipeline
def test_a_sweep_over_objectives_trains_one_run_per_objective_and_scores_its_disentanglement(tmp_path):
    out = tmp_path / "sweep"
    points = sweep_points("beta,tcvae", [2.0])
    summary = run_sweep(out, points, SETTINGS, overrides={**TINY, "train_limit": 1024}, log=lambda m: None)
    assert [row["run"] for row in summary["runs"]] == ["beta-2", "tcvae-2"]
    assert [row["label"] for row in summary["runs"]] == ["β=2", "tcvae γ=2"]
    beta_run, tcvae_run = summary["runs"]
    assert beta_run["beta"] == 2.0 and tcvae_run["beta"] == 1.0  # the TC-VAE keeps the ELBO's KL weights
    assert json.loads((out / "tcvae-2" / "config.json").read_text())["model"]["objective"]["tc_weight"] == 2.0
    for row in summary["runs"]:
        assert 0 <= row["mig"] <= 1 and 0 <= row["dci_disentanglement"] <= 1 and 0 <= row["sap"] <= 1
        assert (out / row["run"] / "disentanglement.json").is_file()
    page = (out / "sweep.html").read_text()
    assert "<h2>Likelihood against disentanglement" in page and "<h2>Metrics against each objective" in page


@pytest.mark.parametrize("spec", ["", "a,b", "1,1", "-1", "nan"])
def test_bad_weight_lists_are_clear_errors(spec):
    with pytest.raises(VaelabError, match="--beta"):
        parse_weights(spec, "--beta")


@pytest.mark.parametrize("spec", ["", "beta,ica", "tcvae,tcvae"])
def test_bad_objective_lists_are_clear_errors(spec):
    with pytest.raises(VaelabError, match="--objective must list distinct objectives of: beta, tcvae, factorvae, "
                                          "capacity"):
        sweep_points(spec, [1.0])
