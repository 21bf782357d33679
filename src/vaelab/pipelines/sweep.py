"""`vaelab sweep`: one model per setting (an objective and its weight), each trained, evaluated and analysed the
same way, then one report.

    SWEEP/beta-0.1/ …   ordinary run directories (config.json, model.safetensors, eval.json, generation.json,
    SWEEP/tcvae-6/  …   factors.json, disentanglement.json), all with the same seed, data and architecture: only the
                        objective and its weight differ (β for beta, tc_weight for tcvae and factorvae, capacity_max
                        in nats for capacity)
    SWEEP/sweep.json    the settings and one row of numbers per setting
    SWEEP/sweep.html    the report: rate–distortion, likelihood against disentanglement (MIG, DCI), metrics against
                        the weight, samples and traversals side by side

Every step is skipped when its output is already there with the same settings, and a partly trained run is resumed,
so an interrupted sweep is continued by running the same command again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vaelab.analysis.disentanglement import measure_disentanglement
from vaelab.analysis.factors import analyse_factors, is_named, shown_name
from vaelab.analysis.generation import RealReference, measure_generation, real_reference
from vaelab.config import RunConfig
from vaelab.data.catalog import describe
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.reference_classifier import classifier_summary
from vaelab.io import atomic_write_json
from vaelab.report.sweep_page import build_sweep_report
from vaelab.rundir import (
    CONFIG,
    DISENTANGLEMENT,
    EVAL,
    FACTORS,
    GENERATION,
    has_resumable_checkpoint,
    read_artefact_if_present,
    read_config,
    read_trainer_state,
)
from vaelab.training import train

SWEEP_JSON = "sweep.json"
SWEEP_HTML = "sweep.html"

Log = Callable[[str], None]


@dataclass(frozen=True)
class SweepSettings:
    """How each β's model is measured (the same for every β)."""

    epochs: int
    samples: int = 2000  # prior samples per run for classifier FID, precision/recall, classes, sharpness
    inception_samples: int = 0  # Inception FID on the first N of them (0: skip; ≈0.11 s per image on 2 CPU cores)
    iw_samples: int = 100
    iw_images: int = 1000
    factor_bases: int = 50
    metric_images: int = 10_000  # test images for MIG, DCI and SAP


WEIGHT_OF = {"beta": "beta", "tcvae": "tc_weight", "factorvae": "tc_weight", "capacity": "capacity_max"}


@dataclass(frozen=True)
class SweepPoint:
    """One model of a sweep: an objective and the value of its weight option (`WEIGHT_OF`)."""

    objective: str
    weight: float

    @property
    def name(self) -> str:
        """Its run directory: beta-0.5, tcvae-6, capacity-25."""
        return f"{self.objective}-{self.weight:g}"

    @property
    def label(self) -> str:
        symbol = {"beta": "β", "capacity": "C"}.get(self.objective, "γ")
        return f"β={self.weight:g}" if self.objective == "beta" else f"{self.objective} {symbol}={self.weight:g}"

    def overrides(self) -> dict[str, Any]:
        return {"objective": self.objective, WEIGHT_OF[self.objective]: self.weight}


def parse_weights(spec: str, flag: str = "--weight") -> list[float]:
    """`0.5,1,2` → sorted distinct finite numbers ≥ 0; anything else is a one-line error naming `flag`."""
    try:
        weights = [float(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise VaelabError(f"{flag} must be a comma-separated list of numbers such as 0.5,1,2 (got '{spec}')") from None
    if not weights or any(not weight >= 0 or weight != weight or weight == float("inf") for weight in weights):
        raise VaelabError(f"{flag} needs finite values ≥ 0 (got '{spec}')")
    if len(set(weights)) != len(weights):
        raise VaelabError(f"{flag} lists a value twice ('{spec}')")
    return sorted(weights)


def sweep_points(objectives: str, weights: Sequence[float]) -> list[SweepPoint]:
    """Every objective of the comma-separated list with every weight."""
    names = [name.strip() for name in objectives.split(",") if name.strip()]
    unknown = [name for name in names if name not in WEIGHT_OF]
    if unknown or not names or len(set(names)) != len(names):
        raise VaelabError(f"--objective must list distinct objectives of: {', '.join(WEIGHT_OF)} (got '{objectives}')")
    return [SweepPoint(name, weight) for name in names for weight in weights]


def _train_or_resume(config: RunConfig, run_dir: Path, log: Log) -> str:
    """Train the β's run to `config.train.epochs`; 'skipped' when it is already there."""
    if (run_dir / CONFIG).is_file():
        stored = read_config(run_dir)
        if stored.to_dict() != config.to_dict():
            raise VaelabError(
                f"{run_dir} holds a run with other settings than this sweep asks for; choose another --out "
                "(or delete that run)"
            )
        epochs_done = read_trainer_state(run_dir).get("epoch", 0)
        if epochs_done >= config.train.epochs:
            return "skipped"
        if has_resumable_checkpoint(run_dir):
            log(f"{run_dir.name}: resuming at epoch {epochs_done + 1}")
            train(config, run_dir, resume=True, progress=False, log=log)
            return "resumed"
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise VaelabError(f"{run_dir} exists and is not a vaelab run; choose another --out")
    log(f"{run_dir.name}: training {config.train.epochs} epochs")
    train(config, run_dir, resume=False, progress=False, log=log)
    return "trained"


def _evaluate(run_dir: Path, settings: SweepSettings, log: Log) -> tuple[dict[str, Any], str]:
    stored = read_artefact_if_present(run_dir, EVAL)
    if stored is not None:
        iwae = stored.get("iwae", {})
        if iwae.get("k") == settings.iw_samples and iwae.get("images") == settings.iw_images:
            return stored, "skipped"
    log(f"{run_dir.name}: evaluating (IWAE-{settings.iw_samples} on {settings.iw_images:,} test images)")
    return evaluate_run(run_dir, settings.iw_samples, settings.iw_images), "computed"


def _measure_samples(
    run_dir: Path, settings: SweepSettings, reference: RealReference, log: Log
) -> tuple[dict[str, Any], str]:
    stored = read_artefact_if_present(run_dir, GENERATION)
    if stored is not None:
        entry = stored.get("samplers", {}).get("prior", {})
        if entry.get("samples") == settings.samples and entry.get("inception_samples", 0) == settings.inception_samples:
            return entry, "skipped"
    log(f"{run_dir.name}: generation metrics of {settings.samples:,} prior samples")
    result = measure_generation(run_dir, ["prior"], settings.samples, settings.inception_samples > 0,
                                settings.inception_samples or None, log=log, reference=reference)
    return result["samplers"]["prior"], "computed"


def _factors(run_dir: Path, settings: SweepSettings, reference: RealReference, log: Log) -> tuple[list, str]:
    stored = read_artefact_if_present(run_dir, FACTORS)
    if stored is not None:
        return stored, "skipped"
    log(f"{run_dir.name}: factor analysis from {settings.factor_bases} test codes")
    return analyse_factors(run_dir, settings.factor_bases, classifier=reference.classifier), "computed"


def _disentanglement(run_dir: Path, settings: SweepSettings, log: Log) -> tuple[dict | None, str]:
    if not describe(read_config(run_dir).data.dataset).attributes:
        return None, "skipped"
    stored = read_artefact_if_present(run_dir, DISENTANGLEMENT)
    if stored is not None and settings.metric_images in (stored.get("images_requested"),
                                                         stored["images"] + stored["images_dropped"]):
        return stored, "skipped"
    log(f"{run_dir.name}: MIG, DCI and SAP on {settings.metric_images:,} test images")
    return measure_disentanglement(run_dir, settings.metric_images), "computed"


def summary_row(
    point: SweepPoint, config: RunConfig, run_dir: Path, evaluation: dict, generation: dict, factors: list,
    disentanglement: dict | None,
) -> dict[str, Any]:
    """The numbers of one setting that the curves are drawn from."""
    active = [row for row in factors if row["active"]]
    smoothness = [row["smoothness_ratio"] for row in active if row["smoothness_ratio"] is not None]
    scores = disentanglement["all"] if disentanglement is not None else None
    return {
        "objective": point.objective,
        "weight": point.weight,
        "label": point.label,
        "beta": config.model.objective.beta,
        "run": run_dir.name,
        "elbo": evaluation["elbo"],
        "recon": evaluation["recon"],  # distortion, nats
        "kl": evaluation["kl"],  # rate, nats
        "iwae_nll": evaluation.get("iwae", {}).get("nll"),
        "active_units": evaluation["active_units"],
        "latent_dim": evaluation["latent_dim"],
        "mse": evaluation["mse"],
        "fid_classifier": generation["fid_classifier"],
        "precision": generation["precision"],
        "recall": generation["recall"],
        "classes_covered": generation["classes_covered"],
        "fid_inception": generation.get("fid_inception"),
        "sharpness": generation["sharpness"],
        "named_factors": sum(is_named(row) for row in active),
        "factor_names": [f"z{row['dim']}: {shown_name(row)}" for row in active if is_named(row)],
        "max_smoothness_ratio": max(smoothness) if smoothness else None,
        "mig": scores["mig"]["mig"] if scores else None,
        "dci_disentanglement": scores["dci"]["disentanglement"] if scores else None,
        "dci_completeness": scores["dci"]["completeness"] if scores else None,
        "sap": scores["sap"]["sap"] if scores else None,
    }


def run_sweep(
    out: str | Path,
    points: Sequence[SweepPoint | float],
    settings: SweepSettings,
    base: RunConfig | None = None,
    overrides: dict[str, Any] | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Train, evaluate and analyse one run per setting under `out` (a number is a β of objective beta), then write
    sweep.json and sweep.html."""
    points = [point if isinstance(point, SweepPoint) else SweepPoint("beta", point) for point in points]
    out = Path(out)
    if settings.epochs < 1 or settings.samples < 4 or settings.inception_samples < 0:
        raise VaelabError("a sweep needs --epochs ≥ 1, --samples ≥ 4 and --inception-samples ≥ 0")
    if settings.inception_samples > settings.samples:
        raise VaelabError(f"--inception-samples {settings.inception_samples} is more than --samples {settings.samples}")
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    family = given.get("family", given.get("kind", (base or RunConfig()).model.family))
    if family != "vae":
        raise VaelabError(f"vaelab sweep varies the objective of a plain VAE, not a {family}; set model family: vae in "
                          "its config")
    configs = {point: (base or RunConfig()).with_overrides({**given, **point.overrides(), "epochs": settings.epochs})
               for point in points}
    dataset = next(iter(configs.values())).data.dataset
    out.mkdir(parents=True, exist_ok=True)
    reference = real_reference(dataset, settings.inception_samples > 0, log=log)
    rows, steps = [], {}
    started = time.perf_counter()
    for point, config in configs.items():
        run_dir = out / point.name
        status = {"train": _train_or_resume(config, run_dir, log)}
        evaluation, status["eval"] = _evaluate(run_dir, settings, log)
        generation, status["generation"] = _measure_samples(run_dir, settings, reference, log)
        factors, status["factors"] = _factors(run_dir, settings, reference, log)
        disentanglement, status["disentanglement"] = _disentanglement(run_dir, settings, log)
        steps[run_dir.name] = status
        rows.append(summary_row(point, config, run_dir, evaluation, generation, factors, disentanglement))
        log(f"{run_dir.name}: " + ", ".join(f"{step} {state}" for step, state in status.items()))
    summary = {
        "dataset": dataset,
        "points": [asdict(point) for point in points],
        "settings": asdict(settings),
        "config": next(iter(configs.values())).to_dict(),  # the objective differs per run; everything else is this
        "classifier_test_accuracy": classifier_summary(dataset)["test_accuracy"],
        "real_sharpness": reference.summary["sharpness"],
        "runs": rows,
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "created": time.strftime("%Y-%m-%d %H:%M"),
    }
    atomic_write_json(out / SWEEP_JSON, summary)
    build_sweep_report(out, summary, out / SWEEP_HTML)
    return summary
