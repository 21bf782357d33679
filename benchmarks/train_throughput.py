"""Training throughput, measured side by side in one process:

1. vaelab's trainer (whole dataset in memory, index-sliced batches) on the default model;
2. a conventional per-item `Dataset` + `DataLoader` loop of the same model and settings;
3. vaelab's trainer on the fixed tiny reference architecture (conv 1→32→64 stride 2, mirrored decoder);
and the FLOP/s achieved against this machine's measured bf16 and fp32 matmul rates. Any config works, colour ones
included (the reference architecture is then skipped). Optional rows:
- `--compile`: the trainer with `--compile` (torch.compile), against the same trainer without it;
- `--processes N`: `vaelab train` as N processes × 1 thread (torchrun, gloo; the batch stays global) against one
  process × N threads, both as command lines, in one run;
- `--device cuda` puts everything on the GPU (the dataset on the device, bf16 autocast).

    python benchmarks/train_throughput.py [--steps 150] [--config configs/emoji.yaml --steps 80]
    python benchmarks/train_throughput.py --processes 2 --compile --extra-only [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import run_header
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from vaelab.config import RunConfig, load_yaml_config
from vaelab.data import load_split
from vaelab.hardware import autocast, resolve_device, use_bf16
from vaelab.models import build_model
from vaelab.training import train

REFERENCE = {"channels": [32, 64], "blocks_per_stage": 0, "hidden_dim": 0, "latent_dim": 32}


WARMUP_STEPS = 20


def steady_rate(loop_seconds: Callable[[int], float], steps: int, batch_size: int) -> float:
    """Images/s once warm: the loop time of a `WARMUP_STEPS` epoch subtracted from that of a `steps` epoch."""
    return (steps - WARMUP_STEPS) * batch_size / (loop_seconds(steps) - loop_seconds(WARMUP_STEPS))


def trainer_images_per_second(config: RunConfig, steps: int) -> float:
    """Steady-state rate of `vaelab.train`: the training-loop time of a `WARMUP_STEPS` epoch is subtracted from
    that of a `steps` epoch (both exclude data loading and validation), as the DataLoader loop skips its first
    `WARMUP_STEPS` steps."""
    def loop_seconds(n: int) -> float:
        run = config.with_overrides({"train_limit": n * config.train.batch_size, "val_limit": 100, "epochs": 1})
        return train(run, Path(tempfile.mkdtemp()), progress=False, log=lambda m: None).history[0]["train_seconds"]

    return steady_rate(loop_seconds, steps, config.train.batch_size)


def command_line_images_per_second(config: RunConfig, steps: int, processes: int, threads: int) -> float:
    """Steady-state rate of `vaelab train` started as `processes` processes of `threads` threads each (torchrun for
    more than one), measured as `trainer_images_per_second` does, from the runs' metrics."""
    folder = Path(tempfile.mkdtemp())
    config_file = folder / "config.yaml"
    config_file.write_text(json.dumps(config.to_dict()))  # JSON is YAML
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}

    def loop_seconds(n: int) -> float:
        run = folder / f"run-{n}"
        launcher = (["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                    if processes > 1 else [])
        command = [sys.executable, *launcher, "-m", "vaelab", "train", "--config", str(config_file), "--out", str(run),
                   "--train-limit", str(n * config.train.batch_size), "--val-limit", "100", "--epochs", "1",
                   "--no-progress"]
        subprocess.run(command, check=True, capture_output=True, env=environment)
        return json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["train_seconds"]

    return steady_rate(loop_seconds, steps, config.train.batch_size)


class PerItemImages(Dataset):
    """The conventional pattern: one item at a time, converted to float and binarized in __getitem__. With
    `via_pil`, each item goes through a PIL image first, as torchvision's MNIST + ToTensor() does."""

    def __init__(self, images: torch.Tensor, binarize: bool, via_pil: bool) -> None:
        self.images, self.binarize, self.via_pil = images, binarize, via_pil

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        pixels = self.images[index]  # `[C, H, W]`
        if self.via_pil:
            picture = Image.fromarray(pixels.permute(1, 2, 0).squeeze(2).numpy())
            pixels = torch.from_numpy(np.asarray(picture).copy()).reshape(pixels.shape[1], pixels.shape[2], -1)
            pixels = pixels.permute(2, 0, 1)
        x = pixels.float() / 255.0
        return torch.bernoulli(x) if self.binarize else x


def dataloader_images_per_second(config: RunConfig, steps: int, via_pil: bool = False) -> float:
    device = resolve_device(config.train.device)
    bf16 = use_bf16(config.train.precision, device)
    model = build_model(config.model).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, fused=True)
    images = load_split(config.data.dataset, "train").images
    loader = DataLoader(
        PerItemImages(images, config.data.input_mode == "binarized", via_pil), batch_size=config.train.batch_size,
        shuffle=True, drop_last=True,
    )
    started, done = None, 0
    for i, x in enumerate(loader):
        if i == WARMUP_STEPS:
            started, done = time.perf_counter(), 0
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            terms = model.loss_terms(x)
        loss = (terms["recon"] + config.model.objective.beta * terms["kl"]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        loss.item()
        done += x.shape[0]
        if i + 1 == steps:
            break
    return done / (time.perf_counter() - started)


def training_flops_per_image(config: RunConfig) -> float:
    """Forward + backward FLOPs of one training image, counted by PyTorch's FLOP counter."""
    model = build_model(config.model)
    x = torch.rand(64, *config.model.image_shape)
    with FlopCounterMode(display=False) as counter:
        terms = model.loss_terms(x)
        (terms["recon"] + terms["kl"]).mean().backward()
    return counter.get_total_flops() / 64


def matmul_flops(dtype: torch.dtype, size: int = 1024, seconds: float = 3.0) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--config", default="configs/mnist-demo.yaml")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="add a row with torch.compile")
    parser.add_argument("--processes", type=int, default=0, help="add N processes × 1 thread against 1 × N threads")
    parser.add_argument("--extra-only", action="store_true", help="skip the DataLoader and reference rows")
    args = parser.parse_args()
    print(run_header(f"torch {torch.__version__}, {args.steps} steps", args.device))
    default = load_yaml_config(Path(args.config)).with_overrides({"device": args.device})
    device = resolve_device(args.device)
    reference = default.with_overrides(REFERENCE)
    # The peak a row is held against is that of the precision the run computes in: bf16 only where it is native.
    precision = "bf16" if use_bf16(default.train.precision, device) else "fp32"
    peak = matmul_flops(torch.bfloat16 if precision == "bf16" else torch.float32)
    print(f"matmul 1024², {precision}: {peak / 1e9:.0f} GFLOP/s")
    shape = "×".join(map(str, default.model.image_shape))
    rows = [(f"vaelab trainer, {shape} model", default, trainer_images_per_second(default, args.steps))]
    if not args.extra_only:
        rows += [
            (f"DataLoader loop, {shape} model", default, dataloader_images_per_second(default, args.steps)),
            (f"DataLoader loop via PIL, {shape} model", default,
             dataloader_images_per_second(default, args.steps, via_pil=True)),
        ]
        if default.model.image_shape[0] == 1:
            rows += reference_rows(reference, args.steps)
    extra = []
    if args.compile:
        compiled = default.with_overrides({"compile": True})
        extra.append((f"vaelab trainer, {shape} model, compiled", compiled,
                      trainer_images_per_second(compiled, args.steps)))
    if args.processes > 1:
        for processes, threads in ((1, args.processes), (args.processes, 1)):
            extra.append((f"vaelab train, {processes} process(es) × {threads} thread(s)", default,
                          command_line_images_per_second(default, args.steps, processes, threads)))
    print(f"{'setting':40s} {'images/s':>9s} {'GFLOP/s':>8s} {'of ' + precision + ' peak':>13s}")
    for name, config, rate in [*rows, *extra]:
        achieved = rate * training_flops_per_image(config)
        print(f"{name:40s} {rate:9,.0f} {achieved / 1e9:8.1f} {achieved / peak:13.1%}")
    if args.compile:
        print(f"torch.compile speed-up: {extra[0][2] / rows[0][2]:.2f}×")
    if args.processes > 1:
        print(f"{args.processes} processes × 1 thread / 1 process × {args.processes} threads: "
              f"{extra[-1][2] / extra[-2][2]:.2f}×")
    pairs = (("default model", (0, 1, 2)), ("reference", (3, 4, 5)))[: len(rows) // 3]
    for model, (ours, plain, pil) in pairs:
        print(f"trainer / DataLoader speed-up, {model}: {rows[ours][2] / rows[plain][2]:.2f}× "
              f"(via PIL: {rows[ours][2] / rows[pil][2]:.2f}×)")


def reference_rows(reference: RunConfig, steps: int) -> list:
    return [
        ("vaelab trainer, reference 1→32→64", reference, trainer_images_per_second(reference, steps)),
        ("DataLoader loop, reference", reference, dataloader_images_per_second(reference, steps)),
        ("DataLoader loop via PIL, reference", reference,
         dataloader_images_per_second(reference, steps, via_pil=True)),
        ("vaelab trainer, reference, fp32", reference.with_overrides({"precision": "fp32"}),
         trainer_images_per_second(reference.with_overrides({"precision": "fp32"}), steps)),
    ]


if __name__ == "__main__":
    main()
