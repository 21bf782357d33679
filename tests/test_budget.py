"""Training sized by time: the steps a budget buys, the schedules over them, exact repetition with --steps, resume
after a kill, and the refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import DDPM, GAN, tiny_config
from tests.test_bad_arguments import run_cli
from vaelab.config import RunConfig, format_duration, parse_duration
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.evaluate import IW_LADDER, iwae_protocol
from vaelab.fitting import learning_rate
from vaelab.hardware import _flushing_denormals
from vaelab.models.registry import family
from vaelab.training import train
from vaelab.training.budget import estimated_seconds, measure_and_plan, steps_within
from vaelab.training.runs import start_or_resume

QUIET = {"progress": False, "log": lambda message: None}
LABELS = torch.zeros(2048, dtype=torch.long)  # an objective needs the training labels only to count the images


class FakeClock:
    """A clock that moves only when told to: each measured thing takes exactly the time it is given."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


def test_durations_are_read_in_seconds_minutes_and_hours():
    assert parse_duration("90s") == 90 and parse_duration("8m") == 480 and parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45 and parse_duration("1.5h") == 5400 and parse_duration(" 2M ") == 120
    for bad in ("abc", "", "8x", "m", "1h-5m", "0", "0s", "-3s"):
        with pytest.raises(VaelabError, match="time_budget"):
            parse_duration(bad, "time_budget")
    assert format_duration(460) == "7 min 40 s" and format_duration(42.4) == "42 s"


def test_a_budget_buys_the_steps_whose_time_fits_by_a_fake_clock():
    clock = FakeClock()
    taken = []

    def take_step(index: int) -> None:
        taken.append(index)
        clock.spend(0.1)

    plan = measure_and_plan("60s", 60.0, 100, 0, take_step, lambda: clock.spend(0.5), lambda: clock.spend(0.2),
                            clock=clock)
    # Measuring stops after 2 s of steps (20 of them: 2 warm-up, 18 timed), then a validation and a checkpoint.
    assert taken == list(range(20)) and plan.measure_seconds == pytest.approx(2.7)
    assert plan.step_seconds == pytest.approx(0.1)
    # 0.95 × (60 − 2.7) = 54.435 s left: 502 steps in 6 epochs (50.2 s) with 6 × 0.7 s at the epochs' ends.
    assert plan.steps == 502 and plan.epochs == pytest.approx(5.02)
    assert plan.estimated_seconds == pytest.approx(2.7 + 50.2 + 4.2)
    assert plan.estimated_seconds <= plan.budget_seconds


def test_the_steps_bought_are_the_most_that_fit_with_checkpoints_within_epochs():
    costs = {"step_seconds": 0.01, "validation_seconds": 1.0, "checkpoint_seconds": 0.5}
    for seconds in (1.6, 5.0, 33.3, 600.0):
        steps = steps_within(seconds, 300, 100, **costs)
        assert estimated_seconds(steps, 300, 100, **costs) <= seconds < estimated_seconds(steps + 1, 300, 100,
                                                                                            **costs)
    assert steps_within(1.4, 300, 100, **costs) == 0  # one step and its epoch's end do not fit


def test_a_budget_too_small_for_one_step_is_refused_with_what_would_fit():
    clock = FakeClock()
    with pytest.raises(VaelabError, match=r"buys no training step on this machine .* give --time-budget \d+s"):
        measure_and_plan("2s", 2.0, 100, 0, lambda index: clock.spend(0.5), lambda: clock.spend(1.0),
                         lambda: clock.spend(0.2), clock=clock)


def test_the_schedules_span_the_run_and_a_warmup_keeps_its_share_of_it():
    config = tiny_config(epochs=10, kl_warmup_steps=40)  # 16 steps an epoch: the recipe is 160 steps
    objective = family("vae").training_step_class()(config, LABELS)
    assert objective.beta(20) == pytest.approx(0.5)
    objective.set_run_length(40)  # a quarter of the recipe: the warm-up is a quarter too
    assert objective.beta(5) == pytest.approx(0.5) and objective.beta(10) == 1.0
    capacity = tiny_config(epochs=10, objective="capacity", capacity_max=20.0)
    objective = family("vae").training_step_class()(capacity, LABELS)
    objective.set_run_length(40)  # a ramp over the whole run ends with the run
    assert objective.capacity(20) == pytest.approx(10.0) and objective.capacity(40) == pytest.approx(20.0)


def test_a_budgeted_run_killed_half_way_resumes_its_plan_and_steps_repeats_it_bit_for_bit(tmp_path):
    recipe = {"epochs": 10, "train_limit": 1024, "val_limit": 256, "kl_warmup_steps": 30}
    config = tiny_config(time_budget="10s", **recipe)
    train(config.with_overrides({"max_steps": 12}), tmp_path / "budget", **QUIET)  # killed after 12 steps
    stopped = json.loads((tmp_path / "budget" / "trainer_state.json").read_text())
    assert stopped["step"] == 12 and stopped["plan"]["steps"] > 12
    resumed = start_or_resume(None, tmp_path / "budget", None, {}, **QUIET)
    bought = json.loads((tmp_path / "budget" / "budget.json").read_text())
    assert resumed.finished and resumed.steps == bought["steps"] == stopped["plan"]["steps"]  # no new budget
    assert bought["spent_seconds"] > 0 and bought["reproduce"] == f"--steps {bought['steps']}"
    assert (tmp_path / "budget" / "machine.json").is_file()
    history = resumed.history
    assert history[-1]["step"] == bought["steps"] and resumed.epochs_done == history[-1]["epoch"]
    assert history[-1]["lr"] == pytest.approx(config.train.min_lr)  # the cosine schedule ends with the run
    warmup = round(30 * bought["steps"] / (10 * 8))  # kl_warmup_steps belong to the 10 epochs of 8 steps
    first = history[0]
    assert first["beta"] == pytest.approx(min(1.0, (first["step"] - 1) / warmup))

    again = train(tiny_config(steps=bought["steps"], **recipe), tmp_path / "steps", **QUIET)
    assert again.steps == bought["steps"]
    for name in ("model.safetensors", "last.safetensors"):
        first_weights, second_weights = (load_file(tmp_path / run / name) for run in ("budget", "steps"))
        assert first_weights.keys() == second_weights.keys()
        assert all((first_weights[key] == second_weights[key]).all() for key in first_weights), name
    lr = learning_rate(bought["steps"] - 1, bought["steps"], config.train.lr, config.train.min_lr, "cosine")
    assert again.history[-1]["lr"] == pytest.approx(lr)


@pytest.mark.parametrize(("args", "message"), [
    (["--time-budget", "0"], "time_budget must be more than 0 seconds"),
    (["--time-budget", "abc"], "time_budget must be a duration such as 90s, 8m or 1h30m"),
    (["--time-budget", "5m", "--epochs", "3"], "--epochs and --time-budget both set the run's length"),
    (["--steps", "50", "--epochs", "3"], "--epochs and --steps both set the run's length"),
])
def test_bad_lengths_are_refused_in_one_line(capsys, tmp_path, args, message):
    code, out, err = run_cli(capsys, ["train", "--out", str(tmp_path / "run"), *args])
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_a_config_with_both_steps_and_a_budget_is_refused():
    with pytest.raises(VaelabError, match="steps or time_budget, not both"):
        RunConfig.from_dict({"train": {"steps": 100, "time_budget": "5m"}})


def test_an_iwae_pass_sized_by_time_keeps_the_largest_k_that_bounds_a_thousand_images():
    assert iwae_protocol(60.0, 1e-4, 10_000) == (500, 1200)  # 600,000 draws: k = 1,000 would bound 600 images
    assert iwae_protocol(1e6, 1e-4, 10_000) == (1000, 10_000)  # everything fits: the full protocol
    assert iwae_protocol(1.0, 1e-3, 10_000) == (20, 100)  # nothing fits: the smallest k on 100 images
    assert iwae_protocol(60.0, 1e-4, 400) == (1000, 400)  # a small test split: all of it


def test_eval_sized_by_time_records_its_protocol_and_prints_the_full_ones_time(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    messages: list[str] = []
    result = evaluate_run(run, iw_budget="3s", test_limit=500, probe_images=1000, log=messages.append)
    iwae = result["iwae"]
    assert iwae["sized_to"] == "3s" and iwae["k"] in IW_LADDER and 100 <= iwae["images"] <= 500
    assert json.loads((run / "eval.json").read_text())["iwae"]["k"] == iwae["k"]
    sized = next(message for message in messages if message.startswith("IWAE sized to 3s"))
    assert f"k = {iwae['k']:,} on the first {iwae['images']:,} test images" in sized
    assert "the full protocol (k = 1,000, all 500 test images) ≈" in sized


@pytest.mark.parametrize("family_options", [GAN, DDPM], ids=["gan", "ddpm"])
def test_every_family_is_sized_by_the_one_trainer(tmp_path, family_options):
    config = tiny_config(**family_options, train_limit=256, val_limit=32, batch_size=32, time_budget="5s")
    result = train(config, tmp_path / "run", **QUIET)
    bought = json.loads((tmp_path / "run" / "budget.json").read_text())
    assert result.finished and result.steps == bought["steps"] >= 1
    assert result.history[-1]["step"] == bought["steps"] and bought["measure_seconds"] < 5.0


def test_training_flushes_denormals_and_gives_the_process_its_setting_back(tmp_path):
    seen: list[bool] = []
    train(tiny_config(train_limit=256, val_limit=64, epochs=1), tmp_path / "run", progress=False,
          log=lambda message: seen.append(_flushing_denormals()))
    assert seen and all(seen)  # every message was logged while denormals were flushed
    assert not _flushing_denormals()  # and the caller's floating-point state is as it was
