"""The downstream segmentation network of the utility audit and its training loop.

Network: MONAI ``BasicUNet`` (2D, one input channel, four output classes in ACDC order; MONAI
Consortium, arXiv 2211.02701) with features ``(w, w, 2w, 4w, 8w, w)`` for a base width ``w``
(``audit.utility_width``: 16 at the quick preset, 0.5 M parameters; 4 at smoke, 32 on a GPU).
Instance normalisation and LeakyReLU are BasicUNet's defaults. ``arch="dynunet"`` gives MONAI
DynUNet in the nnU-Net 2D layout for 128x128 instead (3x3 convolutions, five 2x down-samplings,
filters ``w .. 16w``; inputs of at least 64x64).

Training recipe (:class:`TrainSpec`; nnU-Net's ingredients, Isensee et al. 2021, Nature Methods
18:203-211, sized for a 2-core CPU): Dice + cross-entropy (``monai.losses.DiceCELoss``, softmax,
Dice over the batch); AdamW (``audit.utility_lr`` 3e-3, weight decay 1e-4) with nnU-Net's poly
decay ``lr * (1 - step / steps) ** 0.9``; batches drawn without replacement within an epoch from
the setting's training pool; optionally square training patches (``audit.utility_crop``) with
foreground oversampling; bfloat16 autocast where the hardware has it (``audit.utility_precision``).
Augmentation on the fly (:mod:`audit.utility.augment`), the same for every setting: a random
affine with probability 0.5 (rotation +-15 degrees, scale 0.85-1.15, translation +-10 % of the
field of view -- with the patches, what lets the net find a heart that is not in the middle of
the window, as in the label-free evaluation crop) and a light intensity change (gamma, scale,
shift, noise). No flips (see :mod:`audit.utility.augment`). Other options: ``optimizer``
``adam`` or ``sgd`` (Nesterov, momentum 0.99, as nnU-Net), ``schedule`` ``constant``,
``strong`` (the ``real+augmentation`` baseline's pipeline). The measured trials behind the
recipe, on real ACDC, are in BENCHMARKS.md ("Utility segmenter on real ACDC").

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

from audit.utility.augment import augment, random_crop, spatial_augment, strong_augment
from audit.utility.multiscale import multiscale_probs
from audit.utility.postprocess import postprocess as _postprocess

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
    optimizer: str = "adamw"
    """``adam``, ``adamw`` or ``sgd`` (Nesterov, momentum 0.99 as nnU-Net)."""
    weight_decay: float = 1e-4
    schedule: str = "poly"
    """``constant`` or ``poly`` (nnU-Net: ``lr * (1 - step / steps) ** 0.9``)."""
    spatial_p: float = 0.5
    """Probability per image of a random affine (rotation, isotropic scale, translation)."""
    bf16: bool = False
    """bfloat16 autocast of the forward pass (CPUs with AMX/AVX512-BF16; CUDA)."""
    crop: int = 0
    """Side of the square training patch cut from each (augmented) image; 0 = the whole image."""
    foreground_p: float = 1.0 / 3.0
    """With ``crop``: probability that a patch is centred on a random labelled pixel (nnU-Net's
    foreground oversampling); otherwise its position is uniform."""
    strong: bool = False
    """The strong conventional augmentation of the ``real+augmentation`` baseline
    (:class:`audit.utility.augment.StrongAugment`) in place of the affine of ``spatial_p``."""
    postprocess: str = "none"
    """Post-processing of every predicted label map, validation included
    (:mod:`audit.utility.postprocess`: ``largest_component`` or ``none``)."""
    scales: tuple[float, ...] = (1.0,)
    """Zooms whose class probabilities every prediction averages, validation included
    (:mod:`audit.utility.multiscale`); ``(1.0,)`` = a plain prediction."""

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


def _autocast(device: str, enabled: bool):
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=bool(enabled))


@torch.inference_mode()
def predict(net: torch.nn.Module, images: np.ndarray, *, batch_size: int = 32, device: str = "cpu",
            bf16: bool | None = None, postprocess: str | None = None, scales: tuple[float, ...] | None = None
            ) -> np.ndarray:
    """Arg-max label maps ``(N,H,W)`` uint8 of ``images`` ``(N,H,W)`` (``bf16``: autocast;
    ``postprocess``: :func:`audit.utility.postprocess.postprocess`; ``scales``: multi-scale
    test-time augmentation, :func:`audit.utility.multiscale.multiscale_probs`; defaults: as the net
    was trained, ``net.utility_bf16``, ``net.utility_postprocess`` and ``net.utility_scales``)."""
    net.eval()
    if bf16 is None:
        bf16 = bool(getattr(net, "utility_bf16", False))
    if postprocess is None:
        postprocess = str(getattr(net, "utility_postprocess", "none"))
    scales = tuple(getattr(net, "utility_scales", (1.0,)) if scales is None else scales)

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        with _autocast(device, bf16):
            return net(x)

    out = np.empty(images.shape, np.uint8)
    for lo in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[lo:lo + batch_size], np.float32)).unsqueeze(1).to(device)
        scores = logits_fn(x) if scales == (1.0,) else multiscale_probs(logits_fn, x, scales)
        out[lo:lo + batch_size] = scores.argmax(1).to(torch.uint8).cpu().numpy()
    return _postprocess(out, postprocess)


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
    net.utility_postprocess = spec.postprocess
    net.utility_scales = tuple(spec.scales)
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
    strong = strong_augment(int(seed) + 1) if spec.strong else None
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
        if strong is not None:
            x, y = strong(x, y)
        elif spec.spatial_p > 0:
            x, y = spatial_augment(x, y, gen, spec.spatial_p)
        if spec.crop > 0:
            x, y = random_crop(x, y, gen, spec.crop, spec.foreground_p)
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
            score = foreground_dice(predict(net, val.images, device=str(device), bf16=spec.bf16,
                                            postprocess=spec.postprocess, scales=spec.scales), val.masks)
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
