"""Evaluation results as (name, value) rows: a plain-text table for the terminal, and the rows the report shows."""

from __future__ import annotations

from typing import Any

from vaelab.evaluation.latents import WEAK_KL_NATS
from vaelab.evaluation.reference_classifier import weakness_text


def likelihood_free_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("dataset / split", f"{result['dataset']} / test ({result['images']:,} images)"),
            ("model", f"{result.get('family', result.get('kind'))}, {result['parameters']:,} parameters")]
    if "bound" in result:
        bound = result["bound"]
        rows.append(("variational bound (estimate)",
                     f"{bound['nll_bound_nats']:.2f} nats  ({bound['bits_per_dim']:.4f} ± "
                     f"{bound['bits_per_dim_standard_error']:.4f} bits/dim, {bound['images']:,} test images, "
                     f"{bound['timesteps_per_image']} sampled timesteps each)"))
        rows.append(("DDIM reconstruction MSE", f"{result['ddim_reconstruction_mse']:.5f} per pixel "
                                                f"({result['ddim_steps']} steps each way)"))
    return rows


def eval_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Every number of an eval.json as (name, value) text, in reading order."""
    if "elbo" not in result:  # a family without a likelihood
        return likelihood_free_rows(result)
    rows = [
        ("dataset / split", f"{result['dataset']} / test ({result['images']:,} images, {result['input_mode']})"),
        ("ELBO", f"{result['elbo']:.2f} nats  ({result['bits_per_dim_elbo']:.4f} bits/dim)"),
        ("reconstruction −log p(x|z)", f"{result['recon']:.2f} nats"),
        ("KL(q(z|x) ‖ p(z))", f"{result['kl']:.2f} nats"),
    ]
    if "iwae" in result:
        iw = result["iwae"]
        rows.append(
            (
                f"IWAE-{iw['k']} NLL",
                f"{iw['nll']:.2f} nats  ({iw['bits_per_dim']:.4f} bits/dim, first {iw['images']:,} test images)",
            )
        )
    rows += [
        ("active units (Cov > 0.01)", f"{result['active_units']} of {result['latent_dim']}"),
        ("reconstruction MSE (per pixel)", f"{result['mse']:.5f}" + _first_images(result, "mse_images")),
    ]
    if "collapse" in result:  # absent from eval.json files written before the diagnosis
        rows.append(("posterior collapse", collapse_text(result["collapse"])))
    if "conditional_accuracy" in result:
        accuracy = result["conditional_accuracy"]
        weakness = weakness_text(accuracy["classifier_test_accuracy"])
        per_class = " ".join(f"{value:.0%}" for value in accuracy["per_class"])
        rows += [
            (
                "conditional accuracy",
                f"{accuracy['overall']:.2%} ({accuracy['samples_per_class']:,} samples per class; the judge's "
                f"accuracy on real test images {accuracy['classifier_test_accuracy']:.2%})",
            ),
            ("  per class 0, 1, …", per_class),
        ] if weakness is None else [
            ("conditional accuracy", f"not judged: the reference classifier is {weakness}"),
        ]
    if "classification" in result:
        classification = result["classification"]
        per_class = " ".join(f"{value:.0%}" for value in classification["per_class_accuracy"])
        rows += [
            ("classification accuracy", f"{classification['accuracy']:.2%} ({classification['images']:,} images)"),
            ("  per class 0, 1, …", per_class),
        ]
    if "linear_probe_accuracy_all" in result:
        probe = result["linear_probe"]
        few, accuracy = probe.get("few_labels", 100), result["linear_probe_accuracy_100"]
        few_text = f"{accuracy:.2%} with {few} labels" if accuracy is not None else f"no balanced {few} labels"
        rows.append((
            "linear probe accuracy",
            f"{few_text}, {result['linear_probe_accuracy_all']:.2%} "
            f"with all {probe['train_images']:,} ({probe['features']})",
        ))
    return rows


def eval_table(result: dict[str, Any]) -> str:
    rows = eval_rows(result)
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    if "note" in result:
        lines.append(f"note: {result['note']}")
    if result.get("collapse", {}).get("warning"):
        lines.append(result["collapse"]["warning"])
    return "\n".join(lines)


def collapse_text(collapse: dict[str, Any]) -> str:
    """`yes: <its signs>`, or `no: N informative dimensions, samples differ S% as much as real images`."""
    if collapse["collapsed"]:
        return "yes: " + ", ".join(collapse["signs"])
    return (f"no: {collapse['informative_dims']} informative dimensions (active, with {WEAK_KL_NATS:g} nats or "
            f"more), samples differ {collapse['sample_spread']:.0%} as much as real images")


def _first_images(result: dict[str, Any], key: str) -> str:
    """"(first N test images)" where a number read fewer than all of them (eval.json files older than the key
    read all)."""
    count = result.get(key, result["images"])
    return f" (first {count:,} test images)" if count < result["images"] else ""
