"""Posterior collapse is said, once and in one line, wherever a run's numbers are read: in training, in `vaelab
eval`, at the top of the report; and a dimension that carries nothing is never named or credited with the class."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tiny_config
from vaelab.analysis.disentanglement import measure_disentanglement
from vaelab.analysis.factors import (
    CLASS_MI_THRESHOLD,
    analyse_factors,
    is_named,
    mutual_information,
    plug_in_mutual_information,
    shown_name,
)
from vaelab.data.datasets import load_split
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.collapse import COLLAPSE_KL_NATS, TRAINING_WARNING, training_warning
from vaelab.evaluation.latents import WEAK_KL_NATS
from vaelab.evaluation.tables import eval_table
from vaelab.report.html import build_report
from vaelab.rundir import EVAL, FACTORS, read_config, read_metrics
from vaelab.training import train
from vaelab.web.app import read_factor_names

FIXES = ("--beta", "--kl-warmup-steps", "--free-bits", "--steps", "--time-budget", "--channels")
SMALL_EVAL = {"iw_samples": 0, "test_limit": 500, "probe_images": 500}


@pytest.fixture(scope="module")
def collapsed_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A small MNIST VAE made to collapse (β = 50, 16 steps on 1,024 real images), and what training said."""
    run_dir = tmp_path_factory.mktemp("collapse") / "beta50"
    said: list[str] = []
    train(tiny_config(beta=50.0, train_limit=1024), run_dir, progress=False, log=said.append)
    return run_dir, said


def test_training_that_collapses_warns_once_in_one_line_and_records_it_in_the_metrics(collapsed_run):
    run_dir, said = collapsed_run
    warnings = [line for line in said if "posterior collapse" in line]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert all(fix in warnings[0] for fix in FIXES)
    recorded = [row for row in read_metrics(run_dir) if TRAINING_WARNING in row]
    assert [row[TRAINING_WARNING] for row in recorded] == warnings
    assert recorded[0]["val_kl"] < COLLAPSE_KL_NATS


def test_the_training_warning_waits_for_the_warm_up_and_half_the_run_and_is_never_repeated(collapsed_run):
    run_dir, _ = collapsed_run
    config, history = read_config(run_dir), read_metrics(run_dir)
    row = {key: value for key, value in history[-1].items() if key != TRAINING_WARNING}
    steps = row["step"]
    assert training_warning(config, row, [], steps, 0) is not None
    assert training_warning(config, row, history, steps, 0) is None  # said already, or said before a resume
    assert training_warning(config, row, [], 3 * steps, 0) is None  # under half the run
    assert training_warning(config, row, [], steps, steps + 1) is None  # the KL still warming up
    assert training_warning(config, {**row, "val_kl": 2 * COLLAPSE_KL_NATS}, [], steps, 0) is None


def test_eval_of_a_collapsed_run_writes_the_diagnosis_to_eval_json_and_prints_the_warning(collapsed_run):
    run_dir, _ = collapsed_run
    result = evaluate_run(run_dir, **SMALL_EVAL)
    collapse = json.loads((run_dir / EVAL).read_text())["collapse"]
    assert collapse == result["collapse"] and collapse["collapsed"]
    assert collapse["kl_per_image"] < COLLAPSE_KL_NATS and collapse["informative_dims"] == 0
    assert collapse["sample_spread"] < 0.5  # samples barely differ from each other
    printed = eval_table(result).splitlines()
    assert printed[-1] == collapse["warning"] and all(fix in printed[-1] for fix in FIXES)
    assert any(line.startswith("posterior collapse") and "yes: the latent carries" in line for line in printed)


def test_a_healthy_run_neither_warns_in_training_nor_is_diagnosed_collapsed(trained_run):
    assert not any(TRAINING_WARNING in row for row in read_metrics(trained_run))
    collapse = evaluate_run(trained_run, write=False, **SMALL_EVAL)["collapse"]
    assert not collapse["collapsed"] and collapse["warning"] is None and collapse["signs"] == []
    assert collapse["kl_per_image"] > COLLAPSE_KL_NATS and collapse["informative_dims"] >= 1


def test_noise_has_no_class_information_against_shuffled_labels_where_the_plug_in_estimate_shows_some():
    """60 real test labels of three classes, as a small folder's test split has: plug-in MI with 20 bins is biased
    by about (20 − 1)(3 − 1)/(2 · 60) ≈ 0.3 nats, the value a collapsed run's inactive dimensions showed. Against
    chance, noise shows nothing on average and never as much as the class threshold (chance itself spreads by
    about 0.05 nats on 60 images)."""
    labels = load_split("mnist", "test").labels.numpy()
    labels = labels[np.isin(labels, (0, 1, 2))][:60]
    noise = np.random.default_rng(0).normal(size=(20, labels.size))
    plug_in = [plug_in_mutual_information(values, labels) for values in noise]
    against_chance = [mutual_information(values, labels) for values in noise]
    assert np.mean(plug_in) > 0.2
    assert np.mean(against_chance) <= 0.02 and np.median(against_chance) == 0.0
    assert max(against_chance) < CLASS_MI_THRESHOLD  # never enough to name a dimension after the class
    # A dimension that fixes the class keeps much of ln 3 ≈ 1.10 nats: chance is taken off, not the information.
    assert mutual_information(labels + 0.1 * noise[0], labels) > 0.4


def test_report_of_a_collapsed_run_opens_with_the_warning_and_names_no_dimension(collapsed_run, tmp_path):
    run_dir, _ = collapsed_run
    evaluate_run(run_dir, **SMALL_EVAL)
    rows = analyse_factors(run_dir, bases=10, steps=5)
    measure_disentanglement(run_dir, images=500)
    page = build_report(run_dir, tmp_path / "report.html").read_text()

    assert re.findall(r"<h2>(.*?)</h2>", page)[0] == "Posterior collapse"
    warning = json.loads((run_dir / EVAL).read_text())["collapse"]["warning"]
    assert warning.replace("'", "&#x27;") in page
    assert not any(is_named(row) for row in rows)
    assert all(row["name"] in ("inactive", "weak") and row["mi_with_class"] <= 0.02 for row in rows)
    assert "(ρ=" not in page and "class MI" not in page  # the marks of a name: `width + class (ρ=…, class MI …)`


def test_a_dimension_under_the_weak_kl_is_shown_weak_even_in_a_factor_table_that_named_it(tmp_path):
    """A factors.json written before weak dimensions went unnamed still reads as weak in the report and explorer."""
    rows = [
        {"dim": 0, "kl": 2.1, "active": True, "name": "width (ρ=+0.91)"},
        {"dim": 1, "kl": WEAK_KL_NATS / 5, "active": True, "name": "left_right_symmetry + class (ρ=-0.69)"},
        {"dim": 2, "kl": 0.001, "active": False, "name": "inactive"},
    ]
    assert [shown_name(row) for row in rows] == ["width (ρ=+0.91)", "weak", "inactive"]
    assert [is_named(row) for row in rows] == [True, False, False]
    (tmp_path / FACTORS).write_text(json.dumps(rows))
    assert read_factor_names(tmp_path) == {0: "width (ρ=+0.91)", 1: "weak", 2: "inactive"}
