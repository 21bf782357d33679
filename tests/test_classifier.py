"""The classifier kinds: the kept labels are a balanced, seeded subset of the training split; M2 learns from
unlabelled images; the head classifies; `vaelab eval` and `vaelab classify` report it; runs resume bit-identically."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.conftest import TINY, tiny_config, train_straight_and_with_a_stop
from tests.faults import identical_weights
from tests.test_cli import TINY_FLAGS, vaelab
from vaelab.analysis.factors import analyse_factors
from vaelab.config import RunConfig
from vaelab.data import balanced_label_subset, load_split, rotate, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.classification import classification_metrics, classify_image, predict_probabilities
from vaelab.images import MAX_IMAGE_SIDE
from vaelab.models import build_model
from vaelab.models.code_m2 import CodeM2, CodeM2Config
from vaelab.report.html import build_report
from vaelab.rundir import load_model
from vaelab.training import train
from vaelab.training.m1m2 import M1M2Config, train_labelled_only, train_m1m2

QUIET = {"progress": False, "log": lambda message: None}
WARMUP = {"kl_warmup_steps": 100, "lr": 2e-3}  # the tiny model's KL collapses early without it


def test_labelled_subset_is_balanced_reproducible_by_seed_and_drawn_from_the_training_split():
    train_labels = load_split("mnist", "train").labels
    chosen = balanced_label_subset(train_labels, 100, seed=3)
    assert chosen.numel() == 100 and chosen.unique().numel() == 100
    assert torch.bincount(train_labels[chosen], minlength=10).tolist() == [10] * 10
    assert torch.equal(chosen, balanced_label_subset(train_labels, 100, seed=3))
    assert not torch.equal(chosen, balanced_label_subset(train_labels, 100, seed=4))
    # Indices into the labels it was given (the training split), nothing else: a prefix stays inside the prefix.
    prefix = balanced_label_subset(train_labels[:3000], 600, seed=0)
    assert int(prefix.max()) < 3000 and torch.equal(prefix, torch.sort(prefix).values)
    with pytest.raises(VaelabError, match="--labels 3010 is not between 1 and the 3,000 training images"):
        balanced_label_subset(train_labels[:3000], 3010, seed=0)
    with pytest.raises(VaelabError, match="must be a multiple of the 10 classes"):
        balanced_label_subset(train_labels, 105, seed=0)
    with pytest.raises(VaelabError, match="--labels 40 needs 20 images of class 1, the training images have 10"):
        balanced_label_subset(torch.tensor([0] * 30 + [1] * 10), 40, seed=0, classes=2)


@pytest.fixture(scope="module")
def head_run(tmp_path_factory) -> Path:
    """A vae-classifier trained with every label of 4,096 real images (4 epochs, ≈5 s at one thread). The
    cross-entropy weight per image is 100: the tiny VAE's latent is nearly collapsed, and only a strong weight
    makes the head's posterior means carry the class."""
    run_dir = tmp_path_factory.mktemp("runs") / "head"
    config = RunConfig().with_overrides(
        {**TINY, **WARMUP, "train_limit": 4096, "epochs": 4, "family": "vae-classifier", "classifier_weight": 409_600}
    )
    train(config, run_dir, **QUIET)
    return run_dir


def test_classification_head_is_far_above_chance_on_real_test_images(head_run):
    test = load_split("mnist", "test").subset(1000)
    probabilities = predict_probabilities(load_model(head_run), to_float(test.images))
    assert torch.allclose(probabilities.sum(1), torch.ones(1000), atol=1e-5)
    metrics = classification_metrics(probabilities.argmax(1).numpy(), test.labels.numpy(), 10)
    assert np.asarray(metrics["confusion_matrix"]).sum() == 1000
    assert metrics["accuracy"] > 0.75  # chance is 0.1; this run reached 0.89 on validation images


def test_a_head_on_the_encoder_trunk_reads_the_hidden_features_and_is_far_above_chance(tmp_path):
    config = RunConfig().with_overrides(
        {**TINY, **WARMUP, "train_limit": 4096, "epochs": 4, "family": "vae-classifier", "classifier_weight": 409_600,
         "head_input": "trunk"}
    )
    train(config, tmp_path / "trunk", **QUIET)
    model = load_model(tmp_path / "trunk")
    assert model.classifier[0].in_features == TINY["hidden_dim"]
    test = load_split("mnist", "test").subset(1000)
    predicted = predict_probabilities(model, to_float(test.images)).argmax(1)
    assert (predicted == test.labels).float().mean() > 0.75  # chance is 0.1


@pytest.mark.parametrize("kind,head_input", [("vae-classifier", "mean"), ("vae-classifier", "trunk"), ("m2", "mean")])
def test_labelled_terms_equal_the_loss_terms_and_the_classifier_computed_apart(kind, head_input):
    torch.manual_seed(0)
    model = build_model(tiny_config(family=kind, head_input=head_input).model).eval()
    x, labels = torch.rand(5, 1, 28, 28).round(), torch.tensor([0, 3, 3, 7, 9])
    noise = torch.randn(5, model.latent_dim)
    with torch.no_grad():
        together, apart = model.labelled_terms(x, labels, noise), model.loss_terms(x, noise, labels)
        assert torch.allclose(together["logits"], model.classify(x), atol=1e-5)
    for name in ("recon", "kl", "mu"):
        assert torch.allclose(together[name], apart[name], atol=1e-4), name


CHANGES = {  # a head-augmentation setting, and the same change made to every test image
    "head_shift": ({"head_shift": 3}, lambda x: torch.roll(x, (3, 3), dims=(2, 3))),
    "head_flip": ({"head_flip": True}, lambda x: x.flip(-1)),
    "head_rotate": ({"head_rotate": 30.0}, lambda x: rotate(x, torch.full((x.shape[0],), 25.0))),
}


@pytest.mark.parametrize("augmentation", list(CHANGES))
def test_a_head_trained_on_changed_images_classifies_such_test_images_better(head_run, tmp_path, augmentation):
    """`head_shift` / `head_flip` / `head_rotate` at work: the same 4,096 images and steps as `head_run`, but the
    cross-entropy reads each labelled batch moved by up to ±3 pixels, half mirrored, or turned by up to ±30°. Judged
    on test images all moved by 3 pixels (down and right), all mirrored, or all turned by 25°."""
    setting, change = CHANGES[augmentation]
    config = RunConfig().with_overrides(
        {**TINY, **WARMUP, "train_limit": 4096, "epochs": 4, "family": "vae-classifier", "classifier_weight": 409_600,
         **setting}
    )
    train(config, tmp_path / "augmented", **QUIET)
    test = load_split("mnist", "test").subset(1000)
    changed = change(to_float(test.images))

    def accuracy(run: Path) -> float:
        return (predict_probabilities(load_model(run), changed).argmax(1) == test.labels).float().mean().item()

    augmented, plain = accuracy(tmp_path / "augmented"), accuracy(head_run)
    assert augmented > plain + 0.05, (augmented, plain)


def test_m2_reads_the_images_before_binarizing_for_q_y_given_x_when_given_them():
    torch.manual_seed(0)
    model = build_model(tiny_config(family="m2").model).eval()
    intensities = torch.rand(4, 1, 28, 28)
    binarized = torch.bernoulli(intensities)
    with torch.no_grad():
        terms = model.unlabelled_terms(binarized, torch.randn(4, model.latent_dim), intensities)
        assert torch.allclose(terms["logits"], model.classify(intensities), atol=1e-5)
        assert not torch.allclose(terms["logits"], model.classify(binarized), atol=1e-3)


@pytest.mark.slow  # 12 epochs to measure a gain; m2 training and resume stay in the fast tests
def test_semi_supervised_m2_beats_the_same_classifier_trained_on_its_labelled_images_alone(tmp_path):
    """100 labels + 2,900 unlabelled real images, 12 epochs (≈40 s at one thread). α = 5,000 gives each labelled
    image the cross-entropy weight α / 100 = 50, what the paper's α = 0.1 · 55,000 gives on the full split."""
    overrides = {**TINY, **WARMUP, "train_limit": 3000, "val_limit": 500, "epochs": 12, "family": "m2",
                 "labels": 100, "classifier_weight": 5000}
    config = RunConfig().with_overrides(overrides)
    result = train(config, tmp_path / "m2", **QUIET)
    train_set = load_split("mnist", "train").subset(3000)
    kept = balanced_label_subset(train_set.labels, 100, seed=0)
    alone = train_labelled_only(config, train_set.images[kept], train_set.labels[kept], result.steps)

    test = load_split("mnist", "test").subset(2000)
    x = to_float(test.images)
    semi = (predict_probabilities(load_model(tmp_path / "m2"), x).argmax(1) == test.labels).float().mean().item()
    supervised = (predict_probabilities(alone, x).argmax(1) == test.labels).float().mean().item()
    # Measured: 0.728 against 0.700 (q(y|x) on intensities; 0.731 against 0.697 when it read binarizations).
    assert semi > supervised + 0.01, (semi, supervised)
    assert semi > 0.6


@pytest.mark.parametrize("head_shift, head_flip", [(0, False), (2, True)])
def test_a_semi_supervised_run_resumes_bit_identically(tmp_path, head_shift, head_flip):
    # 1,948 unlabelled images: 15 steps
    config = tiny_config(family="m2", labels=100, epochs=1, head_shift=head_shift, head_flip=head_flip)
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=7)
    assert resumed.finished and resumed.steps == straight.steps == 15
    generators = load_file(tmp_path / "straight" / "last.safetensors").keys()
    assert "rng.labelled" in generators and ("rng.head_augment" in generators) == head_flip
    assert identical_weights(tmp_path / "straight" / "last.safetensors", tmp_path / "split" / "last.safetensors")


def test_labels_and_classifier_weight_are_validated():
    with pytest.raises(VaelabError, match="labels .* needs --model vae-classifier or m2, not vae"):
        tiny_config(labels=100)
    with pytest.raises(VaelabError, match="classifier_weight must be a finite number ≥ 0"):
        tiny_config(family="m2", classifier_weight=-1.0)
    with pytest.raises(VaelabError, match="classes must be 10 for a m2 on mnist"):
        tiny_config(family="m2", classes=4)
    with pytest.raises(VaelabError, match="head_shift applies to --model vae-classifier or m2, not vae"):
        tiny_config(head_shift=2)
    with pytest.raises(VaelabError, match="head_shift must be between 0 and 7 pixels"):
        tiny_config(family="vae-classifier", head_shift=8)
    with pytest.raises(VaelabError, match="head_flip applies to --model vae-classifier or m2, not cvae"):
        tiny_config(family="cvae", head_flip=True)
    with pytest.raises(VaelabError, match="head_rotate must be between 0 and 45 degrees"):
        tiny_config(family="m2", head_rotate=90.0)


def test_eval_reports_accuracy_confusion_matrix_and_linear_probes_above_chance(head_run, trained_run):
    result = evaluate_run(head_run, iw_samples=0, test_limit=1000, probe_images=5000, write=False)
    classification = result["classification"]
    assert classification["accuracy"] > 0.75 and len(classification["confusion_matrix"]) == 10
    assert result["linear_probe"]["train_images"] == 4096  # the images it trained on: never more, whatever asked
    assert result["linear_probe_accuracy_100"] > 0.5 and result["linear_probe_accuracy_all"] > 0.7
    plain = evaluate_run(trained_run, iw_samples=0, test_limit=1000, probe_images=5000, write=False)
    assert "classification" not in plain
    # The plain tiny VAE's latent is nearly collapsed after 4 epochs, but still far more than chance (0.1).
    assert plain["linear_probe_accuracy_100"] > 0.2 and plain["linear_probe_accuracy_all"] > 0.25


def test_cli_classifies_a_real_test_image_png_as_the_api_does(head_run, tmp_path):
    test = load_split("mnist", "test").subset(1)
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "digit.png")
    result = vaelab("classify", str(head_run), "digit.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    probabilities = predict_probabilities(load_model(head_run), to_float(test.images))[0]
    predicted = int(probabilities.argmax())
    lines = result.stdout.strip().splitlines()
    first = f"digit.png: class {predicted} ({predicted}), probability {probabilities[predicted]:.3f}"
    assert lines[0] == first
    assert len(lines) == 11 and [float(line.split()[-1]) for line in lines[1:]] == pytest.approx(
        probabilities.tolist(), abs=1e-3
    )
    # Dark ink on white paper at another size is inverted, cropped, scaled and centred first.
    big = Image.fromarray(255 - test.images[0, 0].numpy()).resize((84, 84))
    big.save(tmp_path / "paper.png")
    assert vaelab("classify", str(head_run), "paper.png", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--out", "new", "--model", "m2", "--labels", "2000"], "--labels 2000 is not between 1 and the"),
        (["train", "--out", "new", "--model", "flow"], "model family 'flow' is unknown; choose one of: vae"),
        (["train", "--out", "new", "--model", "vae", "--labels", "100"], "needs --model vae-classifier or m2"),
        (["classify", "RUN", "missing.png"], "image missing.png does not exist"),
        (["classify", "PLAIN", "digit.png"], "vaelab classify needs a run that predicts classes"),
    ],
)
def test_bad_classifier_input_is_a_one_line_error(tmp_path, trained_run, head_run, args, message):
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "digit.png")
    args = [{"RUN": str(head_run), "PLAIN": str(trained_run)}.get(arg, arg) for arg in args]
    result = vaelab(*args, *(TINY_FLAGS if args[0] == "train" else []), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "new").exists()


def test_classify_refuses_an_image_larger_than_the_explorer_accepts_naming_its_size_and_the_limit(head_run, tmp_path):
    Image.new("L", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)).save(tmp_path / "largest.png")
    assert classify_image(head_run, tmp_path / "largest.png")["predicted"] in range(10)  # the limit itself is read
    Image.new("L", (MAX_IMAGE_SIDE + 1, 40)).save(tmp_path / "wide.png")
    with pytest.raises(VaelabError) as refused:
        classify_image(head_run, tmp_path / "wide.png")
    message = str(refused.value)
    assert f"wide.png is {MAX_IMAGE_SIDE + 1}×40 px, larger than {MAX_IMAGE_SIDE} px a side" in message
    assert "\n" not in message


def test_eval_json_of_a_cli_trained_m2_run_has_the_classification_numbers(tmp_path):
    trained = vaelab("train", "--out", "run", "--model", "m2", "--labels", "100", *TINY_FLAGS, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    result = vaelab("eval", "run", "--iw-samples", "0", "--test-limit", "200", "--probe-images", "1000",
                    "--class-samples", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "classification accuracy" in result.stdout and "linear probe accuracy" in result.stdout
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert {"classification", "linear_probe_accuracy_100", "linear_probe_accuracy_all"} <= saved.keys()
    assert saved["linear_probe"]["features"] == "posterior means averaged over classes"


def test_report_of_a_classifier_run_shows_its_accuracy_and_confusion_matrix(head_run, tmp_path):
    evaluate_run(head_run, iw_samples=0, test_limit=1000, probe_images=2000)  # the eval.json the report reads
    analyse_factors(head_run, bases=20, steps=7)  # and its factors.json, small (the report's own uses 200 bases)
    page = build_report(head_run, tmp_path / "report.html").read_text()
    section = page.split("<h2>Classification of the test split</h2>")[1].split("</section>")[0]
    accuracy = json.loads((head_run / "eval.json").read_text())["classification"]["accuracy"]
    assert f"Test accuracy {accuracy:.2%} on 1,000 images" in section
    assert section.count("<tr>") == 11 and 'alt="confusion matrix"' in section  # a header and a row per class


@pytest.mark.parametrize("which", ["m2", "code-m2"])
def test_the_unlabelled_bound_scores_every_class_as_the_labelled_bound_does(which):
    """UnlabelledBound decodes every input as every class at once; row y must be the labelled terms for y."""
    torch.manual_seed(0)
    if which == "m2":
        model, x = build_model(tiny_config(family="m2").model), torch.rand(3, 1, 28, 28).round()
    else:
        model, x = CodeM2(CodeM2Config(code_dim=8, latent_dim=4, hidden=32)), torch.randn(3, 8)
    noise = torch.randn(3, model.latent_dim)
    with torch.no_grad():
        terms = model.unlabelled_terms(x, noise)
        for label in (0, 6):
            one = model.labelled_terms(x, torch.full((3,), label), noise)
            assert torch.allclose(terms["recon"][label], one["recon"], atol=1e-4)
            assert torch.allclose(terms["kl"][label], one["kl"], atol=1e-5)
    assert terms["logits"].shape == (3, 10) and (terms["kl_y"] >= -1e-6).all()


def test_m1_m2_stacks_on_a_finished_run_and_beats_chance_on_the_test_split(trained_run, tmp_path):
    settings = M1M2Config(labels=100, epochs=3, train_limit=3000)
    result = train_m1m2(trained_run, tmp_path / "m1m2", settings, log=lambda message: None)
    assert json.loads((tmp_path / "m1m2" / "m1m2.json").read_text())["test_error"] == result["test_error"]
    assert load_file(tmp_path / "m1m2" / "model.safetensors")  # the weights, as safetensors
    assert result["train_images"] == 3000 and result["test_images"] == 10_000
    assert result["weight_per_labelled_code"] == pytest.approx(0.1 * 3000 / 100)
    assert len(result["history"]) == 3 and result["steps"] == 3 * ((3000 - 100) // 100)
    assert result["test_error"] < 0.8  # chance is 0.9 (the tiny 8-d M1 and 3 epochs reach ≈ 0.73)
    with pytest.raises(VaelabError, match="is not between 1 and the 3,000 training images"):
        train_m1m2(trained_run, tmp_path / "bad", M1M2Config(labels=3010, epochs=1, train_limit=3000))


def test_vaelab_m1m2_trains_m2_on_a_runs_codes_and_prints_its_test_error_beside_the_labelled_only_baseline(
        trained_run, tmp_path):
    result = vaelab("m1m2", str(trained_run), "--labels", "50", "--epochs", "1", "--train-limit", "2000",
                    "--out", str(tmp_path / "m1m2"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "m1m2" / "m1m2.json").read_text())
    assert written["settings"]["labels"] == 50 and written["train_images"] == 2000
    assert f"test error {written['test_error']:.2%}" in result.stdout
    assert f"alone: {written['test_error_labelled_only']:.2%}" in result.stdout
    refused = vaelab("m1m2", "pretrained:mnist-cvae", "--epochs", "1", cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
