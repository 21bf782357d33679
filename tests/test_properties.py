"""Property-based tests: any config value or CLI argument either works or is refused in one clean line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from vaelab.errors import VaelabError

FIELDS = {f: section for section in (DataConfig, ModelConfig, TrainConfig) for f in section.__dataclass_fields__}
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-5, 5000), max_size=5),
)
CHECKS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@CHECKS
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), ANY_VALUE, max_size=4))
def test_any_config_values_give_a_valid_config_or_a_one_line_error(overrides):
    try:
        config = RunConfig().with_overrides(overrides)
    except VaelabError as error:
        assert "\n" not in str(error) and str(error)
        return
    config.validate()  # what was accepted is valid, and round-trips through its JSON form
    assert RunConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("props") / "run"
    shutil.copytree(trained_run, target)
    return target


def invoke(args: list[str]) -> None:
    """Run the CLI in-process; user errors must be `VaelabError`s (one line; `main` prints them, exit code 2)
    or Typer usage errors (exit code 2), never another exception."""
    result = CliRunner().invoke(app, args)
    if result.exception is None or isinstance(result.exception, SystemExit):
        assert result.exit_code in (0, 2), result.output
        return
    assert isinstance(result.exception, VaelabError), f"{args} raised {result.exception!r}"
    assert "\n" not in str(result.exception)


NUMBER = st.one_of(st.integers(-3, 40), st.integers(-(2**40), 2**40), st.sampled_from(["x", "", "1e3", "nan"]))
FLOAT = st.one_of(st.floats(-5, 5), st.sampled_from(["nan", "inf", "-inf", "1e308", "x"]))
INDEX = st.one_of(st.integers(-3, 12_000).map(lambda i: f"test:{i}"), st.text(max_size=8))


@CHECKS
@given(n=NUMBER, seed=NUMBER, scale=NUMBER, sampler=st.sampled_from(["prior", "bogus", ""]),
       name=st.sampled_from(["s.png", "s.jpg", "missing/s.png"]))
def test_sample_arguments_work_or_fail_cleanly(run_copy, tmp_path, n, seed, scale, sampler, name):
    invoke(["sample", str(run_copy), "-n", str(n), "--seed", str(seed), "--scale", str(scale), "--sampler", sampler,
            "--out", str(tmp_path / name)])


@CHECKS
@given(n=NUMBER, start=NUMBER, scale=NUMBER)
def test_reconstruct_arguments_work_or_fail_cleanly(run_copy, tmp_path, n, start, scale):
    invoke(["reconstruct", str(run_copy), "-n", str(n), "--start", str(start), "--scale", str(scale),
            "--out", str(tmp_path / "r.png")])


@CHECKS
@given(dims=st.one_of(st.sampled_from(["auto", "0,1", "7", "8", "-1", "0,0", "a,b", ""]), st.text(max_size=6)),
       radius=FLOAT, steps=NUMBER, base=st.one_of(st.just("prior"), INDEX))
def test_traverse_arguments_work_or_fail_cleanly(run_copy, tmp_path, dims, radius, steps, base):
    invoke(["traverse", str(run_copy), "--dims", dims, "--range", str(radius), "--steps", str(steps),
            "--base", base, "--out", str(tmp_path / "t.png")])


@CHECKS
@given(start=INDEX, end=INDEX, steps=NUMBER, mode=st.sampled_from(["linear", "slerp", "cubic", ""]))
def test_interpolate_arguments_work_or_fail_cleanly(run_copy, tmp_path, start, end, steps, mode):
    invoke(["interpolate", str(run_copy), "--from", start, "--to", end, "--steps", str(steps), "--mode", mode,
            "--out", str(tmp_path / "i.png")])


@CHECKS
@given(option=st.sampled_from(["--epochs", "--latent-dim", "--batch-size", "--lr", "--beta", "--channels",
                               "--model", "--dataset", "--seed", "--checkpoint-every", "--skip-nonfinite"]),
       value=st.one_of(NUMBER, FLOAT, st.text(max_size=6)))
def test_train_option_values_are_validated_before_any_work(tmp_path, option, value):
    # `--max-steps 0` is always invalid, so nothing trains: what is proven is that every other value is parsed
    # and checked (type, range, name) with a clean error.
    invoke(["train", "--out", str(tmp_path / "new"), option, str(value), "--max-steps", "0"])
    assert not (tmp_path / "new").exists()


BAD_INPUT = [
    (["data", "fetch", "cifar"], "unknown dataset 'cifar'"),
    (["eval", "{run}", "--iw-samples", "-1"], "--iw-samples must be ≥ 0"),
    (["eval", "{run}", "--iw-images", "0"], "--iw-images must be between 1"),
    (["generation", "{run}", "--sampler", "bogus"], "bogus"),
    (["generation", "{run}", "-n", "0"], "--samples must be between 1"),
    (["sample", "{run}", "--class", "3"], "cvae"),
    (["restyle", "{run}", "--from", "test:3", "--out", "{tmp}/r.png"], "cvae"),
    (["classify", "{run}", "{tmp}/missing.png"], "needs a run that predicts classes"),
    (["factors", "{run}", "--bases", "0"], "bases must be at least 1"),
    (["factors", "{run}", "--range", "-2"], "range must be"),
    (["embed", "{run}", "--method", "bogus"], "bogus"),
    (["embed", "{run}", "--limit", "-4"], "--limit must be between 1"),
    (["reference-classifier", "cifar"], "unknown dataset 'cifar'; choose one of"),
    (["sweep", "--beta", "a,b", "--epochs", "1", "--out", "{tmp}/sweep"], "--beta must be a comma-separated list"),
    (["sweep", "--beta", "1", "--epochs", "0", "--out", "{tmp}/sweep"], "epochs"),
    (["report", "{tmp}/missing-run"], "does not exist"),
    (["explore", "{tmp}/missing-run"], "does not exist"),
    (["train", "--resume", "{tmp}/missing-run"], "does not exist"),
    (["train", "--out", "{tmp}/new", "--labels", "100"], "labels"),
    (["train", "--out", "{tmp}/new", "--checkpoint-every", "-1"], "checkpoint_every"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in
                                                            enumerate(BAD_INPUT)])
def test_every_command_answers_bad_input_in_one_line(run_copy, tmp_path, args, message):
    args = [a.format(run=run_copy, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, VaelabError), f"{args}: {result.exception!r} {result.output}"
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "new").exists()
