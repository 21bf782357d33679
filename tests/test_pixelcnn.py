"""The PixelCNN decoder (`model.decoder: pixelcnn`): causal by autograd over a whole image and without a blind spot,
its log-likelihood is the sum of the per-pixel conditionals computed one pixel at a time, sampling gives the
requested shape and the same conditionals as a teacher-forced pass over the sample, a VAE trains with it on real
MNIST, resumes bit-identically and is evaluated with a bounded sequential decoding, its report traverses from few
codes and sets it beside a factorised decoder, and wrong combinations of options are refused in one line."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from tests.conftest import tiny_config, train_straight_and_with_a_stop
from tests.faults import identical_weights
from vaelab.analysis import factors as factors_module
from vaelab.data import load_split
from vaelab.data.datasets import prepare_inputs, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.pixelcnn import AutoregressiveImage, GatedPixelCNN
from vaelab.models.vae import VAE
from vaelab.report.html import build_report
from vaelab.rundir import load_model, read_metrics
from vaelab.training import train

SIDE = 8


def network(planes: int = 1, layers: int = 3, seed: int = 0) -> GatedPixelCNN:
    torch.manual_seed(seed)
    return GatedPixelCNN(planes, channels=8, layers=layers, conditioning=4).eval()


def test_each_output_pixel_has_zero_gradient_from_itself_and_every_later_pixel_and_sees_up_right():
    net = network()
    x = torch.rand(1, 1, SIDE, SIDE, requires_grad=True)
    conditioning = torch.randn(1, 4, SIDE, SIDE)
    out = net(x, conditioning)
    for i in range(SIDE * SIDE):
        row, column = divmod(i, SIDE)
        (gradient,) = torch.autograd.grad(out[0, 0, row, column], x, retain_graph=True)
        flat = gradient.flatten()
        assert torch.all(flat[i:] == 0), f"pixel {i} depends on a pixel at or after it"
        if column > 0:
            assert flat[i - 1] != 0  # the pixel to the left
        if row > 0 and column < SIDE - 1:
            assert flat[i - SIDE + 1] != 0  # above and to the right: the vertical stack leaves no blind spot


@pytest.mark.parametrize("likelihood", ["bernoulli", "logistic"])
def test_the_log_likelihood_is_the_sum_of_the_conditionals_computed_one_pixel_at_a_time(likelihood):
    observation = LIKELIHOODS[likelihood]()
    net = network(planes=observation.planes_per_channel)
    generator = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 256, (3, 1, SIDE, SIDE), generator=generator) / 255).float()
    if likelihood == "bernoulli":
        x = x.round()
    conditioning = torch.randn(3, 4, SIDE, SIDE, generator=generator)
    whole = AutoregressiveImage(net, conditioning, observation).log_prob(x)
    one_at_a_time = torch.zeros(3)
    with torch.no_grad():
        for i in range(SIDE * SIDE):
            row, column = divmod(i, SIDE)
            seen = x.clone().flatten(1)
            seen[:, i:] = torch.rand(3, SIDE * SIDE - i, generator=generator)  # the future: anything at all
            planes = net(seen.view_as(x), conditioning)
            pixel_log_prob = observation(planes).base_dist.log_prob(x)[:, 0, row, column]
            one_at_a_time += pixel_log_prob
    assert torch.allclose(whole, one_at_a_time, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "logistic"])
def test_sampling_gives_the_requested_shape_and_the_conditionals_of_a_teacher_forced_pass(likelihood):
    observation = LIKELIHOODS[likelihood]()
    net = network(planes=observation.planes_per_channel, layers=2)  # reach 5: windows of 5 rows, 6 columns
    conditioning = torch.randn(5, 4, 12, 14)
    image = AutoregressiveImage(net, conditioning, observation)
    samples, means = image.sample_with_means(torch.Generator().manual_seed(2))
    assert samples.shape == means.shape == (5, 1, 12, 14)
    levels = samples * 255
    assert torch.equal(levels, levels.round()) and samples.min() >= 0 and samples.max() <= 1
    with torch.no_grad():
        teacher_forced = observation(net(samples, conditioning)).mean
    assert torch.allclose(means, teacher_forced, atol=1e-5)
    again, _ = image.sample_with_means(torch.Generator().manual_seed(2))
    assert torch.equal(samples, again)


def test_a_pixelcnn_vae_trains_on_mnist_resumes_bit_identically_decodes_images_and_evaluates(tmp_path, monkeypatch):
    config = tiny_config(decoder="pixelcnn", pixelcnn_layers=2, pixelcnn_channels=8, input_mode="binarized",
                         epochs=1)  # 16 steps
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=7)
    assert resumed.finished and resumed.steps == straight.steps == 16
    assert identical_weights(tmp_path / "straight" / "last.safetensors", tmp_path / "split" / "last.safetensors")
    assert math.isfinite(read_metrics(tmp_path / "straight")[0]["val_elbo"])
    model = load_model(tmp_path / "straight")
    images = model.sample(4, torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    x = load_split("mnist", "test").images[:4].float().div(255).round()
    assert model.decode_dist(model.encode(x)[0]).log_prob(x).shape == (4,)

    # eval decodes only the first SEQUENTIAL_MSE_IMAGES pixel by pixel for the MSE, and says how many.
    monkeypatch.setattr(evaluate, "SEQUENTIAL_MSE_IMAGES", 3)
    numbers = evaluate.evaluate_run(tmp_path / "straight", iw_samples=8, iw_images=5, test_limit=20, probe_images=100,
                                    write=False)
    assert numbers["images"] == 20 and numbers["mse_images"] == 3
    test = load_split("mnist", "test").subset(3)
    inputs = prepare_inputs(test.images, "binarized", evaluate.EVAL_SEED)
    expected = (model.decode(model.encode(inputs)[0]) - to_float(test.images)).pow(2).mean().item()
    assert numbers["mse"] == pytest.approx(expected, rel=1e-5)
    assert numbers["iwae"]["images"] == 5 and numbers["iwae"]["images_below_elbo"] == 0


@pytest.mark.slow  # every picture of the report decoded pixel by pixel; training, resume, decoding and eval stay fast
def test_the_report_of_a_pixelcnn_run_traverses_from_few_codes_and_sets_it_beside_a_factorised_decoder(
        tmp_path, monkeypatch, trained_run):
    run = tmp_path / "pixelcnn"
    train(tiny_config(decoder="pixelcnn", pixelcnn_layers=2, pixelcnn_channels=8, input_mode="binarized", epochs=1),
          run, progress=False, log=lambda message: None)
    factorised = shutil.copytree(trained_run, tmp_path / "factorised")
    monkeypatch.setattr(evaluate, "SEQUENTIAL_MSE_IMAGES", 10)
    monkeypatch.setattr(factors_module, "SEQUENTIAL_DECODER_BASES", 6)  # the rule, not the count, is what is tested
    for folder in (run, factorised):
        evaluate.evaluate_run(folder, iw_samples=4, iw_images=20, test_limit=500, probe_images=500)
    page = build_report(run, tmp_path / "report.html", reference=factorised).read_text()

    factors = json.loads((run / "factors.json").read_text())
    assert {row["bases"] for row in factors} == {6}
    assert "pooled over traversals from the codes of the first 6 test images" in page
    beside = page.split(f"<h2>Beside {factorised}</h2>")[1].split("</section>")[0]
    mine, theirs = (json.loads((folder / "eval.json").read_text()) for folder in (run, factorised))
    assert "vae + PixelCNN decoder (2 layers)" in beside and "<td>vae</td>" in beside
    for evaluation in (mine, theirs):
        assert f"carries {evaluation['kl']:.1f} nats" in beside or f"against {evaluation['kl']:.1f} nats" in beside
        assert f"<td>{evaluation['active_units']} of 8</td>" in beside
    assert beside.count("data:image/png;base64,") == 2  # both runs' prior samples


def test_a_reference_of_another_dataset_is_refused_in_one_line(tmp_path, trained_run):
    run = tmp_path / "fashion"
    train(tiny_config(dataset="fashion-mnist", epochs=1, train_limit=256), run, progress=False,
          log=lambda message: None)
    with pytest.raises(VaelabError, match="is a mnist .* run and this one fashion-mnist .*; pick a reference of the "
                                          "same dataset"):
        build_report(run, tmp_path / "report.html", reference=trained_run)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"decoder": "pixelcnn", "family": "gan"}, "decoder pixelcnn applies to --model vae, cvae"),
    ({"decoder": "pixelcnn", "input_mode": "intensities"}, "needs input_mode binarized"),
    ({"decoder": "pixelcnn", "likelihood": "gaussian"}, "samples from bernoulli or logistic, not gaussian"),
    ({"decoder": "pixelcnn", "dataset": "emoji", "likelihood": "logistic"}, "models one image channel"),
    ({"pixelcnn_layers": 5}, "pixelcnn_layers applies to decoder pixelcnn"),
    ({"decoder": "wavenet"}, "decoder must be one of factorised, pixelcnn"),
])
def test_wrong_decoder_options_are_refused_in_one_line(overrides, message):
    with pytest.raises(VaelabError, match=message):
        tiny_config(**overrides)


def test_the_factorised_decoder_keeps_its_parameter_names():
    names = set(VAE(tiny_config().model).state_dict())
    assert not any(name.startswith("autoregressive.") for name in names)
    pixel = set(VAE(tiny_config(decoder="pixelcnn", input_mode="binarized").model).state_dict())
    assert any(name.startswith("autoregressive.") for name in pixel)
