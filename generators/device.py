"""Where the generators compute: device resolution and mixed precision.

``--device cpu | cuda | cuda:N`` (``RunConfig.device``). Networks are always *initialised* on
the CPU (the weights then depend on the run seed only, not on the device) and moved; every
random draw that defines a *sample* (start noise, GAN noise, VAE prior draws) comes from a
seeded CPU ``torch.Generator`` and is moved, so a seed names the same noise on every device.
Training-time draws (timesteps, diffusion noise) use the device's own generator, seeded per
step by :class:`~generators.training.Trainer` through ``torch.manual_seed`` (which seeds CUDA
too): a GPU run is reproducible on the same GPU, not bit-identical to a CPU run.

Mixed precision: on CUDA the forward passes run under ``torch.autocast(dtype=bfloat16)``
(bf16 keeps fp32's exponent range, so no loss scaling is needed; Micikevicius et al. 2018
describe the fp16 case that needs it). Weights, optimiser state and losses stay fp32. Under
DP-SGD autocast is off: Opacus' per-sample gradient hooks and clipping are validated in fp32,
and a per-sample norm computed from bf16 gradients can come out below the true norm, so a
"clipped" gradient could exceed the bound the accountant assumes. On the CPU nothing changes (autocast on CPU would only slow the small nets down).
"""

from __future__ import annotations

import contextlib
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


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; a no-op elsewhere (see the module docstring)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Every tensor of ``batch`` on ``device`` (non-blocking from pinned memory where possible)."""
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

