"""The utility audit's settings: the ``audit.utility_*`` keys of a run config as one frozen
options object, their checks, and the training recipe (:class:`audit.utility.net.TrainSpec`)
they give every segmentation net.

Each option has one default, the field of :class:`audit.pipeline.config.AuditConfig` it comes
from (presets override it in :data:`audit.pipeline.config.PRESETS`); the checks live here only
and run before any stage (:func:`audit.pipeline.run._check_inputs` builds the options once).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import torch

from audit.core.errors import UserError
from audit.core.numbers import parse_floats
from audit.pipeline.config import FRAME_CHOICES, AuditConfig
from audit.utility.net import TrainSpec
from audit.utility.multiscale import parse_scales
from audit.utility.postprocess import POSTPROCESS
from generators.device import bf16_native

log = logging.getLogger(__name__)

_KEY_BAD = re.compile(r"[^A-Za-z0-9_@.%+-]")
EVAL_CROPS = ("motion", "mask")
PRECISIONS = ("auto", "bf16", "fp32")
FRAMES = ("", *FRAME_CHOICES)


def parse_tta_strengths(text: str) -> tuple[float, ...]:
    """``audit.utility_tta_strengths`` (comma-separated, e.g. ``"0.25,0.5"``; empty = off) as floats
    in (0, 1]; :class:`UserError` naming the key otherwise."""
    try:
        out = parse_floats(text, "0.25,0.5, or empty for off")
    except ValueError as e:
        raise UserError(f"audit.utility_tta_strengths: {e}") from None
    bad = [s for s in out if not 0 < s <= 1]
    if bad:
        raise UserError(f"audit.utility_tta_strengths: every strength must be in (0, 1], got {bad[0]:g}")
    return out


@dataclass(frozen=True)
class UtilityOptions:
    """The ``audit.utility_*`` keys (documented on :class:`audit.pipeline.config.AuditConfig`)."""

    seeds: int = AuditConfig.utility_seeds
    steps: int = AuditConfig.utility_steps
    batch_size: int = AuditConfig.utility_batch_size
    width: int = AuditConfig.utility_width
    crop: int = AuditConfig.utility_crop
    lr: float = AuditConfig.utility_lr
    precision: str = AuditConfig.utility_precision
    eval_crop: str = AuditConfig.utility_eval_crop
    postprocess: str = AuditConfig.utility_postprocess
    predict_scales: str = AuditConfig.utility_predict_scales
    tta_strengths: tuple[float, ...] = parse_tta_strengths(AuditConfig.utility_tta_strengths)
    synthetic_ratio: float = AuditConfig.utility_synthetic_ratio
    sdedit_strength: float = AuditConfig.utility_sdedit_strength
    val_fraction: float = AuditConfig.utility_val_fraction
    mask_agreement: float = AuditConfig.utility_mask_agreement
    frames: str = AuditConfig.utility_frames
    patience: int = 3
    device: str = "cpu"
    threads: int = 0

    @property
    def scales(self) -> tuple[float, ...]:
        """``predict_scales`` parsed (:func:`audit.utility.multiscale.parse_scales`)."""
        return parse_scales(self.predict_scales)

    def spec(self) -> TrainSpec:
        """The recipe of every utility net (see :mod:`audit.utility.net`)."""
        bf16 = bf16_native(self.device) if self.precision == "auto" else self.precision == "bf16"
        return TrainSpec(steps=self.steps, batch_size=self.batch_size, width=self.width, lr=self.lr,
                         patience=self.patience, device=self.device, crop=self.crop, bf16=bf16,
                         postprocess=self.postprocess, scales=self.scales)

    def check(self) -> None:
        if self.seeds < 1 or self.steps < 1 or self.batch_size < 1 or self.width < 1:
            raise UserError("audit.utility_seeds, audit.utility_steps, audit.utility_batch_size and audit.utility_width "
                            f"must be >= 1 (got {self.seeds}, {self.steps}, {self.batch_size}, {self.width})")
        if self.crop != 0 and (self.crop < 32 or self.crop % 16):
            raise UserError(f"audit.utility_crop must be 0 (whole image) or a multiple of 16 of at least 32 (the U-Net "
                            f"halves the patch four times and normalises what is left), got {self.crop}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"audit.utility_lr must be a finite number > 0, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise UserError(f"audit.utility_precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.eval_crop not in EVAL_CROPS:
            raise UserError(f"audit.utility_eval_crop must be one of {', '.join(EVAL_CROPS)}, got {self.eval_crop!r}")
        if self.postprocess not in POSTPROCESS:
            raise UserError(f"audit.utility_postprocess must be one of {', '.join(POSTPROCESS)}, got {self.postprocess!r}")
        try:
            _ = self.scales  # parses the scales
        except ValueError as e:
            raise UserError(f"audit.utility_predict_scales: {e}") from None
        if not (np.isfinite(self.synthetic_ratio) and self.synthetic_ratio >= 0):
            raise UserError(f"audit.utility_synthetic_ratio must be a finite number >= 0, got {self.synthetic_ratio}")
        if not 0 < self.sdedit_strength <= 1:
            raise UserError(f"audit.utility_sdedit_strength must be in (0, 1], got {self.sdedit_strength}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"audit.utility_val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.frames not in FRAMES:
            raise UserError(f"audit.utility_frames must be empty (= data.frames) or one of {', '.join(FRAMES[1:])}, "
                            f"got {self.frames!r}")
        if not 0 <= self.mask_agreement <= 1:
            raise UserError(f"audit.utility_mask_agreement must be in [0, 1] (a fraction of the judge's real-scan Dice), "
                            f"got {self.mask_agreement}")


def options_from_config(cfg) -> UtilityOptions:
    """The ``audit.utility_*`` keys of the run config, checked (:class:`UserError` when out of range)."""
    a = cfg.audit
    device = str(getattr(cfg, "device", "cpu") or "cpu")
    if device != "cpu" and not torch.cuda.is_available():
        log.warning("utility: device %r is not available; training on the CPU", device)
        device = "cpu"
    opts = UtilityOptions(
        seeds=int(a.utility_seeds),
        steps=int(a.utility_steps),
        batch_size=int(a.utility_batch_size),
        width=int(a.utility_width),
        crop=int(a.utility_crop),
        lr=float(a.utility_lr),
        precision=str(a.utility_precision),
        eval_crop=str(a.utility_eval_crop),
        postprocess=str(a.utility_postprocess),
        predict_scales=str(a.utility_predict_scales),
        tta_strengths=parse_tta_strengths(a.utility_tta_strengths),
        synthetic_ratio=float(a.utility_synthetic_ratio),
        sdedit_strength=float(a.utility_sdedit_strength),
        val_fraction=float(a.utility_val_fraction),
        mask_agreement=float(a.utility_mask_agreement),
        frames=str(a.utility_frames),
        device=device,
        threads=int(getattr(getattr(cfg, "train", None), "num_threads", 0) or 0),
    )
    opts.check()
    return opts


def vendor_key(vendor: str) -> str:
    """A vendor name as a results key (the schema allows ``[A-Za-z0-9_@.%+-]``)."""
    return _KEY_BAD.sub("_", str(vendor)) or "_"
