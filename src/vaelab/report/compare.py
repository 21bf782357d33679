"""`vaelab compare RUN RUN …`: runs of any families on one dataset, side by side → compare.json + compare.html.

Every run is measured by the same code with the same seed and sample count: the generation metrics of
`vaelab generation` (Inception and classifier FID, precision and recall, class coverage, sharpness against the real test
images) for every sampler the family offers, its likelihood where one exists (from eval.json, or `vaelab eval`'s
numbers computed now), its size and training cost (metrics.jsonl), its sampling cost in milliseconds per image
(a VAE's or GAN's decoder pass; a ddpm's DDIM at several step counts and its full ancestral chain), an
interpolation row and what each family offers. The page then states the trade in numbers: who blurs (sharpness),
who drops modes (recall, classes) and what diffusion pays at sampling time.

A comparison writes under its output folder alone: the samplers it fits (a VAE's gmm and two-stage, on the codes of
the images the run trained on) are kept in OUT/cache/, and the runs compared are left byte for byte as they were.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vaelab.analysis.generation import PROTOCOL_IMAGES, check_inception_for, measure_generation, real_reference
from vaelab.analysis.interpolation import interpolate_run, interpolation_ends, interpolation_grid
from vaelab.analysis.samplers import sample_images
from vaelab.analysis.smoothness import smoothness_ratio
from vaelab.data.datasets import load_split, to_float
from vaelab.data.sources import sha256_hex
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.diffusion_bound import estimated_bound
from vaelab.evaluation.evaluate import BOUND_TIMESTEPS, EVAL_SEED, trained_parameters
from vaelab.images import make_grid
from vaelab.io import atomic_write_json, atomic_write_text
from vaelab.models.registry import capabilities, model_label
from vaelab.report.html import PAGE_TEMPLATE, html_table, img_tag
from vaelab.rundir import BEST, EVAL, load_model, read_artefact_if_present, read_config, read_metrics

COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"
MEASURED_RUNS = "runs"  # OUT/runs/: each run's finished measurement, for a comparison started again
CACHE = "cache"  # OUT/cache/NAME-DIGEST/: the samplers fitted for a run (its weights), reused by any later comparison
COMPARE_SEED = 0
GRID_SAMPLES = 64
TIMED_IMAGES = 32  # images per timed sampling call (after one untimed warm-up call)
ANCESTRAL_TIMED_IMAGES = 4  # the full chain is T network passes: fewer images are enough to time it
# … and fewer of its passes: each costs the same, so this many are timed and scaled by T / ANCESTRAL_TIMED_STEPS (the
# whole chain of a T = 1,000 ddpm, warm-up and timed call, was 6,000 network passes of the comparison's minutes).
ANCESTRAL_TIMED_STEPS = 20
DDIM_STEP_COUNTS = (10, 25, 50)
INTERPOLATION_STEPS = 10

Log = Callable[[str], None]


def check_runs(run_dirs: Sequence[str | Path]) -> str:
    """The one dataset of the runs; a missing run or runs on different datasets are one-line errors."""
    if len(run_dirs) < 1:
        raise VaelabError("give at least one run directory to compare")
    datasets = {str(run): read_config(run).data.dataset for run in run_dirs}  # read_config names a missing run
    if len(set(datasets.values())) > 1:
        listed = ", ".join(f"{run} ({dataset})" for run, dataset in datasets.items())
        raise VaelabError(f"runs on different datasets cannot be compared: {listed}; compare runs of one dataset")
    return next(iter(datasets.values()))


def milliseconds_per_image(draw: Callable[[int], torch.Tensor], images: int) -> float:
    draw(min(images, 2))  # warm-up: the first call pays for allocation and kernel selection
    started = time.perf_counter()
    draw(images)
    return 1000 * (time.perf_counter() - started) / images


@torch.no_grad()
def sampling_costs(model: torch.nn.Module, seed: int = COMPARE_SEED) -> dict[str, float]:
    """Milliseconds per sampled image, by way of sampling: `decode` for a VAE or a GAN; `ddim_N` for N DDIM steps
    and `ancestral` (all T steps, from `ANCESTRAL_TIMED_STEPS` of its network passes) for a ddpm."""
    generator = torch.Generator().manual_seed(seed)
    if capabilities(model).sampling != "diffusion":
        return {"decode": milliseconds_per_image(lambda n: model.sample(n, generator), TIMED_IMAGES)}
    costs = {f"ddim_{steps}": milliseconds_per_image(lambda n, s=steps: model.sample(n, generator, steps=s),
                                                     TIMED_IMAGES)
             for steps in DDIM_STEP_COUNTS if steps <= model.steps}
    timed = min(ANCESTRAL_TIMED_STEPS, model.steps)

    def network_passes(n: int) -> torch.Tensor:  # the chain's cost less its few elementwise operations per step
        x = torch.randn(n, *model.image_shape, generator=generator).to(model.device)
        return torch.stack([model.predicted_noise(x, model.steps - 1 - step) for step in range(timed)])

    costs["ancestral"] = milliseconds_per_image(network_passes, ANCESTRAL_TIMED_IMAGES) * model.steps / timed
    return costs


def training_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = sum(row.get("train_seconds", 0.0) for row in history)
    images = sum(row.get("images_per_s", 0.0) * row.get("train_seconds", 0.0) for row in history)
    return {"epochs": len(history), "train_seconds": seconds,
            "images_per_s": images / seconds if seconds > 0 else None}


def likelihood_summary(
    run_dir: Path, model: torch.nn.Module, can: Any, iw_samples: int, iw_images: int, log: Log
) -> dict[str, Any] | None:
    """The run's held-out likelihood: a VAE's IWAE bound, a ddpm's estimated bound (from eval.json when it holds
    one, else computed now on the first `iw_images` test images, as `vaelab eval --iw-images` computes it; the run
    directory is left as it was); None for a GAN."""
    if not can.likelihood and can.sampling != "diffusion":
        return None
    evaluation = read_artefact_if_present(run_dir, EVAL)
    if not isinstance(evaluation, dict) or not ("iwae" in evaluation or "bound" in evaluation):
        what = f"IWAE-{iw_samples}" if can.likelihood else "its bound estimate"
        log(f"{run_dir}: no eval.json with a bound yet: {what} on {iw_images:,} test images")
        if can.likelihood:
            evaluation = evaluate_run(run_dir, iw_samples, iw_images, test_limit=iw_images, write=False)
        else:  # the bound alone: eval's DDIM reconstructions (100 images, 2 × its steps passes) are not shown here
            test = load_split(read_config(run_dir).data.dataset, "test").subset(iw_images)
            evaluation = {"bound": estimated_bound(model, to_float(test.images), BOUND_TIMESTEPS, EVAL_SEED)}
    if "bound" in evaluation:
        bound = evaluation["bound"]
        return {"kind": "variational bound (estimate)", "nll_nats": bound["nll_bound_nats"],
                "bits_per_dim": bound["bits_per_dim"], "images": bound["images"], "estimate": True}
    if "iwae" in evaluation:
        iwae = evaluation["iwae"]
        return {"kind": f"IWAE-{iwae['k']}", "nll_nats": iwae["nll"], "bits_per_dim": iwae["bits_per_dim"],
                "images": iwae["images"], "estimate": False}
    return {"kind": "ELBO", "nll_nats": -evaluation["elbo"], "bits_per_dim": evaluation["bits_per_dim_elbo"],
            "images": evaluation["images"], "estimate": False}


def offers(can: Any, costs: dict[str, float], smoothness: float) -> dict[str, str]:
    encoder = "q(z|x)" if can.encoder else "DDIM inversion (deterministic)" if can.inversion else "none"
    likelihood = ("IWAE bound" if can.likelihood else "variational bound (estimate)" if can.sampling == "diffusion"
                  else "none")
    cheapest = min(costs.values())
    return {"encoder": encoder, "likelihood": likelihood,
            "smooth latent": f"interpolation max/mean step {smoothness:.2f}",
            "sampling cost": f"{cheapest:.2f} ms/image" + (" (DDIM, fewest steps)" if len(costs) > 1 else "")}


def best_sampler(samplers: dict[str, dict[str, Any]]) -> str:
    """The sampler with the lowest Inception FID when every sampler has one, else the lowest classifier FID (the
    two scales are never mixed)."""
    metric = "fid_inception" if all("fid_inception" in entry for entry in samplers.values()) else "fid_classifier"
    return min(samplers, key=lambda name: samplers[name][metric])


def compare_run(
    run_dir: Path, reference: Any, settings: dict[str, Any], cache_dir: Path, log: Log
) -> tuple[dict, dict[str, str]]:
    """One run's entry of compare.json, and its pictures (HTML tags); its fitted samplers are kept in `cache_dir`.
    A bound computed now reads at most as many test images as samples are drawn (`-n`): a quick comparison stays
    quick."""
    config = read_config(run_dir)
    model = load_model(run_dir)
    can = capabilities(model)
    samples = settings["samples"]
    log(f"{run_dir}: generation metrics ({samples:,} samples per sampler)")
    generation = measure_generation(run_dir, "all", samples, settings["inception"], settings["inception_samples"],
                                    settings["reference_images"], log=log, reference=reference, write=False,
                                    steps=settings["steps"] if can.sampling == "diffusion" else None,
                                    inception_for=settings["inception_for"], cache_dir=cache_dir)
    samplers = generation["samplers"]
    best = best_sampler(samplers)
    log(f"{run_dir}: sampling cost, interpolation, likelihood")
    costs = sampling_costs(model)
    start, end, mode = interpolation_ends(can)
    path = interpolate_run(run_dir, start, end, INTERPOLATION_STEPS, mode)
    smoothness = smoothness_ratio(path.decoded)
    sampling_net = model.ema if can.sampling == "diffusion" else getattr(model, "generator", model)
    entry = {
        "run": str(run_dir), "family": config.model.family, "dataset": config.data.dataset,
        "parameters": trained_parameters(model),
        "sampling_parameters": sum(p.numel() for p in sampling_net.parameters()),
        "weights_mb": sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20,
        "training": training_summary(read_metrics(run_dir)),
        "generation": {name: {key: value for key, value in entry.items() if key != "class_histogram"}
                       for name, entry in samplers.items()},
        "best_sampler": best,
        "likelihood": likelihood_summary(run_dir, model, can, settings["iw_samples"],
                                         min(settings["iw_images"], samples), log),
        "sampling_ms_per_image": costs,
        "interpolation": {"from": start, "to": end, "mode": mode, "smoothness_ratio": smoothness},
        "offers": offers(can, costs, smoothness),
    }
    if can.sampling == "diffusion":
        entry["ddim_steps"] = samplers[best].get("ddim_steps")
    grid = make_grid(sample_images(model, run_dir, GRID_SAMPLES, best, COMPARE_SEED, log=log, cache_dir=cache_dir),
                     columns=8)
    pictures = {"samples": img_tag(grid, f"{run_dir.name} samples", scale=2),
                "interpolation": img_tag(interpolation_grid(path), f"{run_dir.name} interpolation", scale=2)}
    return entry, pictures


def trade_statements(runs: list[dict[str, Any]], real_sharpness: float) -> list[str]:
    """The trade, in this comparison's numbers: who blurs, who drops modes, who pays at sampling time."""
    best = [(run, run["generation"][run["best_sampler"]]) for run in runs]
    statements = []
    blurriest = min(best, key=lambda pair: pair[1]["sharpness"])
    statements.append(
        f"Blur: {blurriest[0]['model']} ({blurriest[0]['run']}) has the least sharp samples, "
        f"{blurriest[1]['sharpness']:.4f} against {real_sharpness:.4f} for real test images "
        f"({blurriest[1]['sharpness'] / real_sharpness:.0%}); "
        + ", ".join(f"{run['model']} {entry['sharpness'] / real_sharpness:.0%}" for run, entry in best) + ".")
    narrowest = min(best, key=lambda pair: (pair[1]["recall"], pair[1]["classes_covered"]))
    statements.append(
        f"Modes: {narrowest[0]['model']} has the lowest recall, {narrowest[1]['recall']:.3f}, covering "
        f"{narrowest[1]['classes_covered']} classes; "
        + ", ".join(f"{run['model']} recall {entry['recall']:.3f}, {entry['classes_covered']} classes"
                    for run, entry in best) + ".")
    cost = [(run, min(run["sampling_ms_per_image"].values())) for run in runs]
    slowest, fastest = max(cost, key=lambda pair: pair[1]), min(cost, key=lambda pair: pair[1])
    statements.append(
        f"Sampling: {slowest[0]['model']} pays {slowest[1]:.2f} ms per image at its cheapest, "
        f"{slowest[1] / fastest[1]:.0f}× the {fastest[1]:.2f} ms of {fastest[0]['model']}.")
    with_likelihood = [run for run in runs if run["likelihood"] is not None]
    if with_likelihood:
        statements.append("Likelihood: " + ", ".join(
            f"{run['model']} {run['likelihood']['bits_per_dim']:.3f} bits/dim ({run['likelihood']['kind']})"
            for run in with_likelihood) + "; " + (", ".join(run["model"] for run in runs if run["likelihood"] is None)
                                                  or "no run") + " has none.")
    return statements


def measured_run(
    run_dir: Path, reference: Any, settings: dict[str, Any], out_dir: Path, log: Log
) -> tuple[dict[str, Any], dict[str, str]]:
    """compare_run, kept in OUT/runs/NAME.json: a comparison that is stopped (hours at the 10k protocol on a CPU)
    and started again with the same settings reuses every run already measured, as long as its weights are the same
    bytes. The samplers fitted for it are kept in OUT/cache/NAME-DIGEST/ by run and weights alone: a comparison
    with other settings reuses them too."""
    weights = {"run": str(run_dir.resolve()), "model_sha256": sha256_hex((run_dir / BEST).read_bytes())}
    key = {**weights, **settings}
    name = run_dir.resolve().name
    path = out_dir / MEASURED_RUNS / f"{name}-{sha256_hex(repr(key).encode())[:12]}.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        kept = None
    if isinstance(kept, dict) and kept.get("key") == key:
        log(f"{run_dir}: measured earlier with the same settings and weights ({path}); reused")
        entry, pictures = kept["entry"], kept["pictures"]
    else:
        cache_dir = out_dir / CACHE / f"{name}-{sha256_hex(repr(weights).encode())[:12]}"
        entry, pictures = compare_run(run_dir, reference, settings, cache_dir, log)
        path.parent.mkdir(exist_ok=True)
        atomic_write_json(path, {"key": key, "entry": entry, "pictures": pictures})
    # Read afresh each time (cheap): what the run is, and what its latent carries by its eval.json.
    return {**entry, "model": model_label(read_config(run_dir).model), "latent": latent_summary(run_dir)}, pictures


def latent_summary(run_dir: Path) -> dict[str, Any] | None:
    """How much the latent carries by the run's eval.json: the test KL and the active units; None without one."""
    evaluation = read_artefact_if_present(run_dir, EVAL)
    if not isinstance(evaluation, dict) or "active_units" not in evaluation:
        return None
    return {"kl_nats": evaluation["kl"], "active_units": evaluation["active_units"],
            "latent_dim": evaluation["latent_dim"]}


def compare_runs(
    run_dirs: Sequence[str | Path], out_dir: str | Path, samples: int = PROTOCOL_IMAGES, inception: bool = True,
    inception_samples: int | None = None, reference_images: int | None = None, iw_samples: int = 100,
    iw_images: int = 1000, steps: int | None = None, log: Log = lambda message: None, inception_for: str = "best",
) -> dict[str, Any]:
    """Measure every run the same way and write OUT/compare.json and OUT/compare.html.

    `inception_for="best"` (the default) gives each run one Inception FID, for its sampler with the lowest
    classifier FID; "all" measures every sampler. Each run's measurement is kept under OUT/runs/, so that a
    comparison started again after a stop only measures what it had not finished.
    """
    dataset = check_runs(run_dirs)
    check_inception_for(inception_for)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"samples": samples, "inception": inception, "inception_samples": inception_samples,
                "reference_images": reference_images, "inception_for": inception_for, "iw_samples": iw_samples,
                "iw_images": iw_images, "steps": steps, "seed": COMPARE_SEED}
    reference = real_reference(dataset, inception, reference_images, log)
    runs, pictures = [], []
    for run_dir in run_dirs:
        entry, picture = measured_run(Path(run_dir), reference, settings, out_dir, log)
        runs.append(entry)
        pictures.append(picture)
    result = {
        "dataset": dataset, "seed": COMPARE_SEED, "samples": samples,
        "inception_samples": (inception_samples or samples) if inception else None,
        "inception_for": inception_for if inception else None,
        "quick": inception and (inception_samples or samples) < PROTOCOL_IMAGES,
        "real": reference.summary, "runs": runs,
        "trade": trade_statements(runs, reference.summary["sharpness"]),
        "generated": time.strftime("%Y-%m-%d %H:%M"),
    }
    atomic_write_json(out_dir / COMPARE_JSON, result)
    atomic_write_text(out_dir / COMPARE_HTML, compare_page(result, pictures))
    return result


def _number(value: float | None, form: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, form)


def compare_page(result: dict[str, Any], pictures: list[dict[str, str]]) -> str:
    runs = result["runs"]
    quick = " (QUICK: fewer than 10,000 samples)" if result["quick"] else ""
    metric_rows = []
    for run in runs:
        for name, entry in run["generation"].items():
            fid = _number(entry.get("fid_inception"), ".2f")
            metric_rows.append([run["model"], run["run"], name + (" ★" if name == run["best_sampler"] else ""), fid,
                                f"{entry['fid_classifier']:.3f}", f"{entry['precision']:.3f}",
                                f"{entry['recall']:.3f}", str(entry["classes_covered"]),
                                f"{entry['sharpness']:.4f}"])
    cost_rows = [[run["model"], f"{run['parameters']:,}", f"{run['weights_mb']:.1f}",
                  _number(run["training"]["train_seconds"] / 60, ".1f"),
                  _number(run["training"]["images_per_s"], ",.0f"),
                  "; ".join(f"{how.replace('_', ' ')} {ms:.2f}" for how, ms in run["sampling_ms_per_image"].items()),
                  "–" if run["likelihood"] is None else
                  f"{run['likelihood']['bits_per_dim']:.3f} ({run['likelihood']['kind']}, "
                  f"{run['likelihood']['images']:,} images)",
                  "–" if run["latent"] is None else
                  f"{run['latent']['kl_nats']:.1f} nats, {run['latent']['active_units']} of "
                  f"{run['latent']['latent_dim']} active"] for run in runs]
    offer_rows = [[run["model"], *run["offers"].values()] for run in runs]
    picture_rows = [[run["model"], picture["samples"], picture["interpolation"]]
                    for run, picture in zip(runs, pictures, strict=True)]
    sections = [
        ("The trade, measured", "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in result["trade"]) + "</ul>"),
        (f"Sample quality{quick}", html_table(
            ["model", "run", "sampler", "Inception FID", "classifier FID", "precision", "recall", "classes",
             "sharpness"], metric_rows)
         + f"<p class='note'>Real test images: sharpness {result['real']['sharpness']:.4f}. Seed {result['seed']}, "
           f"{result['samples']:,} samples per sampler, the same code for every run; ★ the sampler shown below."
           + (" Inception FID only for each run's sampler with the lowest classifier FID (–: not measured)."
              if result.get("inception_for") == "best" else "") + "</p>"),
        ("Size, cost and likelihood", html_table(
            ["model", "parameters", "weights (MB)", "training (min)", "training images/s",
             "sampling ms per image", "test bits/dim", "latent (test KL, active units)"], cost_rows)),
        ("What each offers", html_table(["model", "encoder", "likelihood", "smooth latent", "sampling cost"],
                                        offer_rows)),
        ("Samples and an interpolation (latent path above, pixel cross-fade below)",
         html_table(["model", "samples (best sampler)", "interpolation"], picture_rows)),
    ]
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections)
    return PAGE_TEMPLATE.format(
        title=html.escape(f"vaelab compare — {result['dataset']}"),
        subtitle=html.escape(f"{len(runs)} runs: " + ", ".join(f"{run['model']} ({run['run']})" for run in runs)
                             + f" · generated {result['generated']}"),
        body=body,
    )
