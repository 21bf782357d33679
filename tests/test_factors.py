"""The factor table: rank correlations, mutual information, the naming rule, and the real tiny model's table."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vaelab.analysis.factors import (
    ATTRIBUTE_RHO_THRESHOLD,
    CLASS_MI_THRESHOLD,
    analyse_factors,
    factor_name,
    factor_table,
    is_weak,
    mutual_information,
    plug_in_mutual_information,
    pooled_rank_correlation,
    spearman,
)
from vaelab.errors import VaelabError
from vaelab.evaluation.latents import WEAK_KL_NATS


def test_spearman_is_plus_or_minus_one_for_monotone_pairs_and_ignores_undefined_measurements():
    x = np.arange(6.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -np.exp(x)) == pytest.approx(-1.0)
    assert spearman(x, np.array([0.0, math.nan, 2.0, 3.0, math.nan, 9.0])) == pytest.approx(1.0)
    assert spearman(x, np.full(6, 4.0)) == 0.0  # an attribute the dimension does not move
    assert math.isnan(spearman(x, np.array([1.0, 2.0] + [math.nan] * 4)))  # too few points to rank


def test_pooled_correlation_is_weak_when_the_bases_differ_more_than_the_traversal_moves_them():
    values = np.linspace(-3, 3, 7)
    small_effect = np.array([[base + 0.1 * v for v in values] for base in (0.0, 10.0, 20.0, 30.0)])
    large_effect = np.array([[base + 10.0 * v for v in values] for base in (0.0, 1.0, 2.0, 3.0)])

    assert all(spearman(values, row) == pytest.approx(1.0) for row in small_effect)  # each base: monotone
    assert abs(pooled_rank_correlation(values, small_effect)) < 0.3
    assert pooled_rank_correlation(values, large_effect) > 0.95


def test_mutual_information_is_the_label_entropy_when_the_code_fixes_the_class_and_near_zero_when_independent():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 1000)
    determined = labels + rng.uniform(0.0, 0.5, labels.size)  # each class in its own interval
    independent = rng.normal(size=labels.size)

    assert plug_in_mutual_information(determined, labels) == pytest.approx(math.log(10), abs=1e-9)  # nats
    assert mutual_information(determined, labels) == pytest.approx(math.log(10), abs=0.02)  # less the bias
    assert 0 <= mutual_information(independent, labels) < 0.02


def test_a_dimension_is_named_after_its_attribute_then_the_class_then_entangled():
    strong = ATTRIBUTE_RHO_THRESHOLD + 0.05
    weak = ATTRIBUTE_RHO_THRESHOLD - 0.05
    assert factor_name("stroke_thickness", strong, CLASS_MI_THRESHOLD / 2) == f"stroke_thickness (ρ=+{strong:.2f})"
    assert factor_name("slant", -strong, 0.0) == f"slant (ρ=-{strong:.2f})"
    assert factor_name("slant", weak, CLASS_MI_THRESHOLD) == "class/shape"
    assert factor_name("slant", weak, CLASS_MI_THRESHOLD / 2) == "entangled"
    assert factor_name(None, math.nan, 0.0) == "entangled"


def test_an_attribute_does_not_hide_a_class_change_the_dimension_also_carries():
    """The demo's z17: width ρ = +0.91 and 0.49 nats of class information (its traversal turns a 1 into a 0)."""
    assert factor_name("width", 0.91, 0.49) == "width + class (ρ=+0.91, class MI 0.49 nats)"
    assert factor_name("width", 0.91, CLASS_MI_THRESHOLD) == "width + class (ρ=+0.91, class MI 0.25 nats)"
    assert factor_name("slant", -0.94, 0.15) == "slant (ρ=-0.94)"  # the demo's z27: no class change, no "class"


def test_an_active_dimension_under_the_weak_kl_is_weak_and_the_terminal_table_says_so():
    rows = [
        {"dim": 3, "kl": 2.5, "active": True},
        {"dim": 1, "kl": WEAK_KL_NATS / 2, "active": True},
        {"dim": 0, "kl": WEAK_KL_NATS / 10, "active": False},
    ]
    assert [is_weak(row) for row in rows] == [False, True, False]  # an inactive dimension is inactive, not weak
    filled = [{**row, "top_attribute": None, "top_rho": None, "second_attribute": None, "second_rho": None,
               "top_rho_weakest_class": None, "mi_with_class": 0.0, "smoothness_ratio": None, "name": "x"}
              for row in rows]
    lines = factor_table(filled).splitlines()[1:]
    assert ["weak" in line.split()[:3] for line in lines] == [False, True, False]


def test_factor_table_of_the_real_tiny_model_names_a_dimension_after_an_attribute(trained_run, tmp_path):
    out = tmp_path / "factors.json"
    rows = analyse_factors(trained_run, bases=40, radius=3.0, steps=9, out=out)

    assert json.loads(out.read_text()) == rows
    assert sorted(row["dim"] for row in rows) == list(range(8))
    assert [row["kl"] for row in rows] == sorted((row["kl"] for row in rows), reverse=True)
    traversed = [row for row in rows if row["active"] and not row["weak"]]
    assert traversed and max(abs(row["top_rho"]) for row in traversed) >= 0.5
    for row in traversed:
        assert row["name"] == factor_name(row["top_attribute"], row["top_rho"], row["mi_with_class"])
        assert abs(row["top_rho"]) >= abs(row["second_rho"]) and row["smoothness_ratio"] >= 1.0
        assert 0.0 <= row["mi_with_class"] <= math.log(10)
    assert all(row["name"] == "inactive" and row["top_rho"] is None for row in rows if not row["active"])
    assert all(row["weak"] == (row["active"] and row["kl"] < WEAK_KL_NATS) for row in rows)
    assert all(row["name"] == "weak" and row["top_rho"] is None for row in rows if row["weak"])
    assert any("(ρ=" in row["name"] for row in rows)
    assert factor_table(rows).splitlines()[0].startswith("dim")


def test_factors_command_writes_factors_and_disentanglement_json_into_the_run_and_prints_both(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    result = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "factors", str(run), "--bases", "8", "--steps", "5", "--no-classify",
         "--metric-images", "600"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "top attribute" in result.stdout and str(run / "factors.json") in result.stdout
    assert len(json.loads((run / "factors.json").read_text())) == 8
    scores = json.loads((run / "disentanglement.json").read_text())
    assert scores["all"]["images"] == 600 and "MIG" in result.stdout and "decorrelated" in result.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [({"bases": 0}, "bases must be at least 1"), ({"out": "factors.csv"}, "must end in .json"),
     ({"steps": 1}, "steps must be between 2 and"), ({"radius": -1.0}, "range must be a number of")],
)
def test_bad_factor_options_are_refused_before_any_work(trained_run, options, message):
    with pytest.raises(VaelabError, match=message):
        analyse_factors(trained_run, **options)
