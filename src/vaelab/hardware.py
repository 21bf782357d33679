"""What the hardware offers: device choice, bf16 autocast support, and the machine profile that `train`, `eval`
and the benchmarks print first (and a run directory records as machine.json)."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")
# oneDNN kernel levels (ONEDNN_MAX_CPU_ISA) that still compute in bf16 natively
_BF16_ISAS = ("ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")


def resolve_device(name: str) -> torch.device:
    """`auto` (a CUDA GPU when there is one, else the CPU), `cpu`, `cuda` or `cuda:N`; any other name (`gpu`, a
    typo) is a one-line error rather than torch's list of every device type it was built to know."""
    kind, _, index = name.partition(":")
    if name != "auto" and (kind not in ("cpu", "cuda") or (index and not (kind == "cuda" and index.isdecimal()))):
        from vaelab.errors import VaelabError

        raise VaelabError(f"unknown --device '{name}'; use auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        from vaelab.errors import VaelabError

        raise VaelabError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 is native on `device`, and why. It pays off on GPUs that support it and on CPUs with bf16
    instructions (AVX512-BF16 / AMX) that the kernels may use; elsewhere it is emulated, many times slower than
    fp32."""
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        return native, "the GPU computes in bf16" if native else "the GPU has no bf16"
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return False, "no native bf16 on this CPU (AVX512-BF16 / AMX), emulated bf16 would be slower"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if isa not in _BF16_ISAS:
        return False, f"ONEDNN_MAX_CPU_ISA={isa} keeps the kernels from the CPU's bf16 instructions"
    amx = torch.cpu._is_amx_tile_supported()
    return True, f"native bf16 on this CPU: {'AMX' if amx else 'AVX512-BF16'}"


def bf16_supported(device: torch.device) -> bool:
    return bf16_support(device)[0]


def use_bf16(precision: str, device: torch.device) -> bool:
    return precision == "bf16" or (precision == "auto" and bf16_supported(device))


@dataclass(frozen=True)
class MachineProfile:
    """The device a command runs on, its threads, the precision chosen and why, and measured matmul rates."""

    device: str
    threads: int
    precision: str  # what runs: bf16 or fp32
    why: str
    fp32_gflops: float
    bf16_gflops: float | None  # measured only where bf16 is native

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        rates = f"matmul {self.fp32_gflops:,.0f} GFLOP/s fp32"
        if self.bf16_gflops is not None:
            rates += f", {self.bf16_gflops:,.0f} bf16"
        return (f"machine: {self.device}, {self.threads} thread{'s' * (self.threads != 1)}; {rates}; "
                f"precision {self.precision} ({self.why})")


def machine_profile(device: torch.device, precision: str = "auto", reason: str | None = None) -> MachineProfile:
    """The profile of `device` for a command asking for `precision` (auto, bf16 or fp32), with the `reason` of a
    command whose precision is fixed; the rates are measured once per process (about half a second)."""
    native, why = bf16_support(device)
    chosen = use_bf16(precision, device)
    if reason is not None:
        why = reason
    elif precision != "auto":
        why = f"asked for; {why}"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{_cpu_name()}, {os.cpu_count()} cores"
    return MachineProfile(name, torch.get_num_threads(), "bf16" if chosen else "fp32", why,
                          matmul_gflops(device.type, torch.float32),
                          matmul_gflops(device.type, torch.bfloat16) if native else None)


@functools.cache
def matmul_gflops(device_type: str, dtype: torch.dtype, seconds: float = 0.2) -> float:
    """Measured GFLOP/s of square matmuls on a device type (512 on a CPU, 4,096 on a GPU)."""
    size = 4096 if device_type == "cuda" else 512
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(device_type, dtype) for _ in range(2))

    def wait() -> None:
        if device_type == "cuda":
            torch.cuda.synchronize()

    a @ b
    wait()
    started, count = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        a @ b
        wait()
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started) / 1e9


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def flushes_denormals(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` with numbers below 1.2e-38 computed as zero on the CPU (flush-to-zero), then give the process
    back its own setting. As training goes on, more and more of Adam's moments and the gradients fall there, and a
    CPU takes many times longer for each such number: the demo recipe in fp32 on one AVX2 core fell to 889 images/s
    in its second epoch without it, and held 1,397 with it (`benchmarks/denormals.py`; a GPU flushes anyway)."""

    @functools.wraps(function)
    def flushed(*args: P.args, **kwargs: P.kwargs) -> R:
        was_flushing = _flushing_denormals()
        torch.set_flush_denormal(True)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_flush_denormal(was_flushing)

    return flushed


def _flushing_denormals() -> bool:
    """Whether the CPU flushes denormals now: a denormal times one is then zero."""
    return bool(torch.tensor(1e-39, dtype=torch.float32) * 1.0 == 0)


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def compile_networks(model: torch.nn.Module) -> None:
    """torch.compile each of the model's networks in place, so the weights keep the plain model's names."""
    for network in model.children():
        network.compile()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch and the BLAS libraries (scikit-learn's) on one CPU thread for the duration, then as they were: for the
    small fits inside an analysis (the linear probe, the gmm and two-stage samplers), whose matrices are too small
    to share. With other work on 2 cores, two threads spun against each other: the probe's fit on 4,096 codes took
    56 s with two BLAS threads and 1.2 s with one, a second-stage step 1.46 s with two torch threads and 0.13 s
    with one."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)
