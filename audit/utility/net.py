"""The downstream segmentation network of the utility audit and its training loop.

Network: MONAI ``BasicUNet`` (2D, one input channel, four output classes in ACDC order; MONAI
Consortium, arXiv 2211.02701) with features ``(w, w, 2w, 4w, 8w, w)`` for a base width ``w``
(``audit.utility_width``: 8 at the quick preset -- 0.12 M parameters, sized for a 2-core CPU:
at 128x128 it trains about twice as fast as width 16 and, given the same wall time, reaches a
higher Dice on the phantom -- 4 at smoke, 32 on a GPU). Instance normalisation and LeakyReLU are BasicUNet's defaults.

Training: Dice + cross-entropy (``monai.losses.DiceCELoss``, softmax, Dice over the batch), Adam
(constant lr 3e-3: the CPU presets train for only tens to hundreds of steps, and a high rate
reaches a useful net within them; a cosine decay was measurably worse at that budget), batches
drawn without replacement within an epoch from the setting's training pool.
Light augmentation on the fly, identical for every setting: an intensity change per image --
gamma log-uniform in [0.78, 1.28], scale in [0.9, 1.1], shift in [-0.05, 0.05], Gaussian noise
with sigma in [0, 0.02], clipped to [0, 1]. No flips: every image the audit sees has the same
short-axis orientation (RV on one side of the LV), mirroring makes the net learn both sides, and
at the CPU budgets it cost Dice and stability (smoke phantom, 60 steps, 3 seeds: mean Dice of
the real net 0.58 with flips, one seed with a collapsed LV, vs 0.74 without). No geometric
resampling either: it would blur the masks and cost CPU time.

Recipe options (:class:`TrainSpec`; the defaults above are the code's quick recipe): ``arch``
``dynunet`` (MONAI DynUNet in the nnU-Net 2D layout for 128x128 -- 3x3 convolutions, five 2x
down-samplings, filters ``w .. 16w``; needs inputs of at least 64x64), ``optimizer`` ``adamw`` or
``sgd`` (Nesterov, momentum 0.99, as nnU-Net), ``schedule`` ``poly`` (nnU-Net's
``lr * (1 - step / steps) ** 0.9``), ``spatial_p`` (probability of a random affine per image:
rotation within +-15 degrees, isotropic scale in [0.85, 1.15], translation within +-10 % of the
field of view -- also what makes the net tolerate a crop that is not centred on the heart by its
mask, see ``cohorts.preprocess`` ``centre="motion"``) and ``bf16`` (bfloat16 autocast of the
forward pass, for CPUs with AMX / AVX512-BF16 and GPUs). On real ACDC the constant-rate recipe
stays far from a converged net at the quick budget; the measured trials are in BENCHMARKS.md
("Utility segmenter on real ACDC").

Early stopping: every ``eval_every`` steps the mean foreground Dice (RV, MYO, LV pooled over the
validation images) is measured on the validation pool; the best weights are kept and training
stops after ``patience`` evaluations without improvement (or at ``steps``).

Determinism: the initial weights come from ``torch.manual_seed(seed)``, batches from
``numpy.random.default_rng(seed)`` and augmentation from a ``torch.Generator`` seeded with
``seed``; on the CPU two trainings with the same seed and data give the same weights.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

N_CLASSES = 4


@dataclass(frozen=True)
class TrainSpec:
    """How one utility net is trained (see the module docstring)."""

    steps: int = 100
    batch_size: int = 8
    width: int = 16
    lr: float = 3e-3
    eval_every: int = 0
    """Steps between validations; 0 = ``max(1, steps // 5)``."""
    patience: int = 3
    """Validations without improvement before stopping."""
    device: str = "cpu"
    arch: str = "basicunet"
    """``basicunet`` (MONAI BasicUNet) or ``dynunet`` (MONAI DynUNet, nnU-Net-style)."""
    optimizer: str = "adam"
    """``adam``, ``adamw`` or ``sgd`` (Nesterov, momentum 0.99 as nnU-Net)."""
    weight_decay: float = 0.0
    schedule: str = "constant"
    """``constant`` or ``poly`` (nnU-Net: ``lr * (1 - step / steps) ** 0.9``)."""
    spatial_p: float = 0.0
    """Probability per image of a random affine (rotation, isotropic scale, translation)."""
    bf16: bool = False
    """bfloat16 autocast of the forward pass (CPUs with AMX/AVX512-BF16; CUDA)."""

    @property
    def every(self) -> int:
        return self.eval_every if self.eval_every > 0 else max(1, self.steps // 5)


@dataclass
class Pool:
    """Images ``(N,H,W)`` float32 in [0, 1] with their ``(N,H,W)`` uint8 masks."""

    images: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def build_net(width: int, arch: str = "basicunet") -> torch.nn.Module:
    w = int(width)
    if w < 1:
        raise ValueError(f"network width must be >= 1, got {w}")
    if arch == "basicunet":
        from monai.networks.nets import BasicUNet  # lazy: MONAI (and torch) only when this network is built

        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=N_CLASSES, features=(w, w, 2 * w, 4 * w, 8 * w, w))
    if arch == "dynunet":
        from monai.networks.nets import DynUNet  # lazy: MONAI (and torch) only when this network is built

        # nnU-Net 2D plan for 128x128: 3x3 convolutions, five 2x down-samplings (to 4x4), filters doubling
        # from w up to 16w; instance norm, LeakyReLU (DynUNet's defaults)
        strides = [[1, 1]] + [[2, 2]] * 5
        return DynUNet(spatial_dims=2, in_channels=1, out_channels=N_CLASSES, kernel_size=[[3, 3]] * 6, strides=strides,
                       upsample_kernel_size=strides[1:], filters=[w * min(2 ** i, 16) for i in range(6)],
                       norm_name="instance", res_block=False)
    raise ValueError(f"unknown utility network {arch!r} (basicunet, dynunet)")


def spatial_augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, p: float,
                    *, rotate: float = 15.0, scale: tuple[float, float] = (0.85, 1.15), shift: float = 0.1
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random affine per image with probability ``p``: rotation within +-``rotate`` degrees,
    isotropic scale in ``scale``, translation within +-``shift`` of the field of view; bilinear
    for images, nearest for masks, zero padding. No mirroring (see the module docstring)."""
    b = x.shape[0]
    u = torch.rand(b, 5, generator=gen)
    on = (u[:, 0] < p).float()
    ang = torch.deg2rad((u[:, 1] * 2 - 1) * rotate) * on
    sc = 1.0 + (scale[0] + (scale[1] - scale[0]) * u[:, 2] - 1.0) * on
    tx, ty = (u[:, 3] * 2 - 1) * 2 * shift * on, (u[:, 4] * 2 - 1) * 2 * shift * on
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = torch.nn.functional.grid_sample(y.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return x, y.long()


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random intensity change (gamma, scale, shift, noise) of a batch ``(B,1,H,W)``; masks unchanged."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=gen)
    gamma = torch.exp((u[:, 0] - 0.5) * 0.5).view(b, 1, 1, 1)  # log-uniform in [e^-0.25, e^0.25]
    scale = (0.9 + 0.2 * u[:, 1]).view(b, 1, 1, 1)
    shift = (-0.05 + 0.1 * u[:, 2]).view(b, 1, 1, 1)
    sigma = (0.02 * u[:, 3]).view(b, 1, 1, 1)
    noise = torch.randn(x.shape, generator=gen) * sigma
    x = (x.clamp(0, 1) ** gamma * scale + shift + noise).clamp(0, 1)
    return x, y


def _autocast(device: str, enabled: bool):
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=bool(enabled))


@torch.inference_mode()
def predict(net: torch.nn.Module, images: np.ndarray, *, batch_size: int = 32, device: str = "cpu",
            bf16: bool | None = None) -> np.ndarray:
    """Arg-max label maps ``(N,H,W)`` uint8 of ``images`` ``(N,H,W)`` (``bf16``: autocast; default:
    as the net was trained, ``net.utility_bf16``)."""
    net.eval()
    if bf16 is None:
        bf16 = bool(getattr(net, "utility_bf16", False))
    out = np.empty(images.shape, np.uint8)
    for lo in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[lo:lo + batch_size], np.float32)).unsqueeze(1).to(device)
        with _autocast(device, bf16):
            logits = net(x)
        out[lo:lo + batch_size] = logits.argmax(1).to(torch.uint8).cpu().numpy()
    return out


def foreground_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over RV/MYO/LV of the Dice pooled over all images (validation criterion)."""
    scores = []
    for k in range(1, N_CLASSES):
        p, r = pred == k, ref == k
        denom = int(p.sum()) + int(r.sum())
        if denom:
            scores.append(2.0 * int((p & r).sum()) / denom)
    return float(np.mean(scores)) if scores else 0.0


def train_segmenter(train: Pool, val: Pool, spec: TrainSpec, seed: int,
                    on_step: Callable[[int], None] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train one net; returns it (best validation weights, eval mode) and a summary dict
    (``steps``, ``best_step``, ``best_val_dice``, ``seconds``, ``step_s``)."""
    from monai.losses import DiceCELoss  # lazy: MONAI (and torch) only when this network is built

    if len(train) == 0:
        raise ValueError("empty training pool")
    if len(val) == 0:
        raise ValueError("empty validation pool")
    device = torch.device(spec.device)
    torch.manual_seed(int(seed))
    net = build_net(spec.width, spec.arch).to(device)
    net.utility_bf16 = bool(spec.bf16)
    if spec.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    elif spec.optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    elif spec.optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=spec.lr, momentum=0.99, nesterov=True, weight_decay=spec.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {spec.optimizer!r} (adam, adamw, sgd)")
    if spec.schedule not in ("constant", "poly"):
        raise ValueError(f"unknown learning-rate schedule {spec.schedule!r} (constant, poly)")
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(int(seed))
    images = torch.from_numpy(np.ascontiguousarray(train.images, np.float32)).unsqueeze(1)
    masks = torch.from_numpy(np.ascontiguousarray(train.masks, np.int64)).unsqueeze(1)
    bs = min(spec.batch_size, len(train))
    order = rng.permutation(len(train))
    pos = 0
    best, best_state, best_step, bad = -1.0, None, 0, 0
    t0 = time.perf_counter()
    train_s = 0.0
    step = 0
    for step in range(1, spec.steps + 1):
        ts = time.perf_counter()
        if pos + bs > len(order):
            order, pos = rng.permutation(len(train)), 0
        idx = torch.from_numpy(order[pos:pos + bs])
        pos += bs
        x, y = images[idx], masks[idx]
        if spec.spatial_p > 0:
            x, y = spatial_augment(x, y, gen, spec.spatial_p)
        x, y = augment(x, y, gen)
        if spec.schedule == "poly":
            for g in opt.param_groups:
                g["lr"] = spec.lr * (1.0 - (step - 1) / spec.steps) ** 0.9
        net.train()
        opt.zero_grad(set_to_none=True)
        with _autocast(str(device), spec.bf16):
            logits = net(x.to(device))
        loss = loss_fn(logits.float(), y.to(device))
        loss.backward()
        opt.step()
        train_s += time.perf_counter() - ts
        if on_step is not None:
            on_step(1)
        if step % spec.every == 0 or step == spec.steps:
            score = foreground_dice(predict(net, val.images, device=str(device), bf16=spec.bf16), val.masks)
            if score > best + 1e-4:
                best, best_step, bad = score, step, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad += 1
                if bad >= spec.patience:
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    info = {"steps": step, "best_step": best_step, "best_val_dice": best, "seconds": time.perf_counter() - t0,
            "step_s": train_s / max(step, 1)}
    return net, info
