"""Where the generators compute: device resolution and mixed precision.

``--device cpu | cuda | cuda:N`` (``RunConfig.device``). Networks are always *initialised* on
the CPU (the weights then depend on the run seed only, not on the device) and moved; every
random draw that defines a *sample* (start noise, GAN noise, VAE prior draws) comes from a
seeded CPU ``torch.Generator`` and is moved, so a seed names the same noise on every device.
Training-time draws (timesteps, diffusion noise) use the device's own generator, seeded per
step by :class:`~generators.training.Trainer` through ``torch.manual_seed`` (which seeds CUDA
too): a GPU run is reproducible on the same GPU, not bit-identical to a CPU run.

Mixed precision (``train.amp``, on by default): the forward passes run under
``torch.autocast(dtype=bfloat16)`` where the device computes bf16 natively -- CUDA GPUs, and CPUs
with bf16 instructions (x86: AVX512-BF16 or AMX-BF16; :func:`bf16_native`). bf16 keeps fp32's
exponent range, so no loss scaling is needed (Micikevicius et al. 2018 describe the fp16 case that
needs it). Weights, optimiser state and losses stay fp32. On a CPU without native bf16 autocast
is a no-op: emulated bf16 is slower than fp32 there. Measured on the 2-core AMX CPU
(BENCHMARKS.md "Generators on real ACDC"): the quick ldm denoiser step 289 -> 186 ms, the
autoencoder step 334 -> 159 ms. The figures of a run therefore depend on whether its CPU has
native bf16 (``env.json`` records the CPU); a seed still names one result per machine type.
Under DP-SGD autocast is off: Opacus' per-sample gradient hooks and clipping are validated in fp32,
and a per-sample norm computed from bf16 gradients can come out below the true norm, so a
"clipped" gradient could exceed the bound the accountant assumes.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import torch

from audit.core.errors import UserError


def resolve(name: str | torch.device | None) -> torch.device:
    """``"cpu"``/``"cuda"``/``"cuda:N"`` -> a torch device that exists here, else a one-line error."""
    dev = torch.device(name or "cpu")
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise UserError(f"device {str(dev)!r} is not supported: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"device {str(dev)!r} was asked for but this torch build ({torch.__version__}) sees no CUDA GPU; "
                        "use --device cpu")
    if dev.index is None and "LOCAL_RANK" in os.environ:  # under torchrun: this rank's GPU
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {str(dev)!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


@functools.lru_cache(maxsize=None)
def _cpu_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware.

    On x86 that is AVX512-BF16 or AMX-BF16, read from :func:`torch.cpu.get_capabilities` (cpuinfo).
    oneDNN's own probe (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) is not enough there: it also
    answers yes for plain AVX-512 (``avx512_core``), where oneDNN *emulates* bf16 -- measured on a
    2-core AVX-512 Xeon without either extension, the utility segmenter's step took 0.21 s under
    bf16 autocast against 0.15 s in fp32, and the quick ldm denoiser's 1.44 s against 0.77 s.
    Other architectures (e.g. aarch64 with its BF16 extension) keep oneDNN's probe, which checks
    the hardware there."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch build without the probe
        return False
    return _x86_bf16_hardware(_cpu_capabilities())


def _cpu_capabilities() -> dict[str, Any]:
    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch build without cpuinfo capabilities
        return {}


def _x86_bf16_hardware(caps: dict[str, Any]) -> bool:
    """``caps`` (:func:`torch.cpu.get_capabilities`): False for an x86 CPU without AVX512-BF16 and
    AMX-BF16, True otherwise (a non-x86 CPU, or capabilities that say nothing of x86)."""
    if caps.get("architecture", "") not in ("x86_64", "x86", "i386", "i686", "AMD64"):
        return True
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def bf16_native(device: str | torch.device = "cpu") -> bool:
    """Whether bfloat16 autocast is native on ``device``: a CUDA GPU with bf16, or a CPU with bf16
    instructions (x86: AVX512-BF16 or AMX-BF16; elsewhere oneDNN emulates bf16, slower than fp32)."""
    if torch.device(device).type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return _cpu_bf16()


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast when ``enabled`` on CUDA, and on a CPU with native bf16; a no-op elsewhere
    (see the module docstring)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if enabled and device.type == "cpu" and _cpu_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Every tensor of ``batch`` on ``device`` (non-blocking from pinned memory where possible)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

