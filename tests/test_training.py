import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_config
from vaelab.errors import VaelabError
from vaelab.rundir import load_model, load_tensors, read_metrics
from vaelab.training import NonFiniteLossError, train
from vaelab.training.runs import start_or_resume

QUIET = {"progress": False, "log": lambda message: None}


def test_short_run_on_real_images_lowers_validation_loss(trained_run):
    metrics = read_metrics(trained_run)
    assert len(metrics) == 4
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"] - 5.0
    for row in metrics:
        assert len(row["val_kl_per_dim"]) == 8
        assert row["val_elbo"] == pytest.approx(-(row["val_recon"] + row["val_kl"]))
        assert row["images_per_s"] > 0 and row["lr"] > 0


def test_same_seed_gives_identical_metrics_and_weights(tmp_path):
    config = tiny_config(epochs=1)
    a = train(config, tmp_path / "a", **QUIET)
    b = train(config, tmp_path / "b", **QUIET)
    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("images_per_s", "train_seconds", "wall_time")}
                              for r in rows]
    assert strip(a.history) == strip(b.history)
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    c = train(tiny_config(epochs=1, seed=1), tmp_path / "c", **QUIET)
    assert c.history[0]["train_loss"] != a.history[0]["train_loss"]


def test_stopping_and_resuming_gives_the_same_final_weights_as_an_uninterrupted_run(tmp_path):
    # 2 epochs of 16 steps; stop mid-way through the first epoch, then again, then finish.
    straight = train(tiny_config(), tmp_path / "straight", **QUIET)
    start_or_resume(tmp_path / "split", None, None, {**tiny_config().options(), "max_steps": 5}, **QUIET)
    assert not (tmp_path / "split" / "metrics.jsonl").exists()
    start_or_resume(None, tmp_path / "split", None, {"max_steps": 21}, **QUIET)
    resumed = start_or_resume(None, tmp_path / "split", None, {}, **QUIET)
    assert resumed.finished and resumed.steps == straight.steps == 32
    for name in ("model.safetensors", "last.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "split" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resume_with_more_epochs_continues_from_the_last_epoch(tmp_path):
    train(tiny_config(epochs=1), tmp_path / "run", **QUIET)
    result = start_or_resume(None, tmp_path / "run", None, {"epochs": 2}, **QUIET)
    assert result.epochs_done == 2 and [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(epochs=1), run, **QUIET)
    before = (run / "model.safetensors").read_bytes(), (run / "last.safetensors").read_bytes()
    with pytest.raises(NonFiniteLossError, match="loss became (nan|inf).*last good checkpoint"):
        # An absurd learning rate with no clipping drives the weights to inf within a few steps.
        start_or_resume(None, run, None, {"epochs": 3, "lr": 1e30, "grad_clip": 1e30}, **QUIET)
    assert (run / "model.safetensors").read_bytes() == before[0]
    assert (run / "last.safetensors").read_bytes() == before[1]


def test_load_model_round_trip_gives_identical_outputs(trained_run):
    model_a, model_b = load_model(trained_run), load_model(trained_run)
    assert not model_a.training
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        mu_a, logvar_a = model_a.encode(x)
        mu_b, logvar_b = model_b.encode(x)
        assert torch.equal(mu_a, mu_b) and torch.equal(logvar_a, logvar_b)
        assert torch.equal(model_a.decode(mu_a), model_b.decode(mu_b))
        assert model_a.decode_dist(mu_a).log_prob(x).shape == (6,)


def test_checkpoint_from_another_config_is_refused_by_name(trained_run, tmp_path):
    other = tmp_path / "other"
    train(tiny_config(epochs=1, latent_dim=4), other, **QUIET)
    (other / "model.safetensors").write_bytes((trained_run / "model.safetensors").read_bytes())
    with pytest.raises(VaelabError, match=r"model.safetensors does not match the model described by config.json"):
        load_model(other)


def test_truncated_checkpoint_is_a_clear_error(trained_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((trained_run / "config.json").read_text())
    (run / "model.safetensors").write_bytes((trained_run / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(VaelabError, match="truncated or corrupted"):
        load_model(run)


def test_changing_the_model_on_resume_is_refused(trained_run):
    with pytest.raises(VaelabError, match="cannot change latent_dim when resuming"):
        start_or_resume(None, trained_run, None, {"latent_dim": 16}, **QUIET)


def test_the_same_tensors_and_metadata_give_the_same_file_bytes_in_every_process(tmp_path):
    """safetensors writes its metadata map in a random order per process; vaelab's files are canonical, so a
    checkpoint's SHA-256 says whether two runs gave the same weights."""
    import subprocess
    import sys

    script = ("import sys, torch; from pathlib import Path; from vaelab.rundir import save_tensors; "
              "save_tensors(Path(sys.argv[1]), {'b': torch.arange(5.0), 'a': torch.ones(2, 3)}, "
              "{'epoch': '3', 'val_elbo': '-1.5', 'kind': 'vae'})")
    files = [tmp_path / f"{i}.safetensors" for i in range(4)]
    for path in files:
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    assert len({path.read_bytes() for path in files}) == 1
    from vaelab.rundir import load_tensors

    tensors, metadata = load_tensors(files[0])
    assert torch.equal(tensors["b"], torch.arange(5.0)) and metadata["epoch"] == "3"


def test_a_compiled_run_writes_the_checkpoint_a_plain_run_writes(tmp_path):
    """`--compile` compiles the networks in place: the same tensor names, a model `load_model` reads, and the
    same losses up to the compiled kernels' rounding."""
    small = {"epochs": 1, "train_limit": 512, "val_limit": 128}
    plain = train(tiny_config(**small), tmp_path / "plain", **QUIET)
    compiled = train(tiny_config(**small, compile=True), tmp_path / "compiled", **QUIET)
    names = [set(load_tensors(tmp_path / run / "last.safetensors")[0]) for run in ("plain", "compiled")]
    assert names[0] == names[1]
    assert load_model(tmp_path / "compiled").config.latent_dim == 8
    assert compiled.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"], rel=0.01)
