"""Conditioning shared by the 2D families: segmentation mask, vendor style, pathology group.

* The mask enters as a one-hot map over the ACDC labels (4 channels).
* Vendor and group enter as indices into vocabularies learnt from the training split, with
  one extra *null* index per vocabulary. The null index is what classifier-free guidance
  (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance") drops conditions to during
  training (probability ``p_uncond``) and what sampling uses for "unconditional".
* An all-zero mask one-hot is the null mask (no channel is "on", not even background), so
  "unconditioned on anatomy" can never be confused with "an empty heart".
* A label the vocabulary does not know is an error (a caller asking for a vendor the model never
  saw), except inside :func:`lenient_labels`: the audit stages score and restyle real subjects
  whose vendor or group may be absent from a small or source-only training split, and there such
  a label is encoded as null (the image conditioned on its mask alone), with a warning.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audit.core.errors import UserError

N_LABELS = 4
log = logging.getLogger(__name__)
_LENIENT: ContextVar[bool] = ContextVar("cmr_audit_lenient_labels", default=False)
_WARNED: set[tuple[str, str]] = set()  # (what, label): warned once per process


@contextmanager
def lenient_labels():
    """Within this block unknown vendor / group labels encode as null instead of raising (see the
    module docstring); the audit pipeline runs its stages inside it."""
    token = _LENIENT.set(True)
    try:
        yield
    finally:
        _LENIENT.reset(token)


@dataclass(frozen=True)
class Vocab:
    vendors: tuple[str, ...]
    groups: tuple[str, ...]

    @classmethod
    def from_data(cls, vendors, groups) -> "Vocab":
        return cls(tuple(sorted({str(v) for v in vendors})), tuple(sorted({str(g) for g in groups})))

    @property
    def null_vendor(self) -> int:
        return len(self.vendors)

    @property
    def null_group(self) -> int:
        return len(self.groups)

    def _encode(self, values, vocab: tuple[str, ...], what: str, n: int) -> torch.Tensor:
        if values is None:
            return torch.full((n,), len(vocab), dtype=torch.long)
        out, unknown = [], set()
        for v in np.asarray(values).astype(str).tolist():
            if v in ("", "None"):
                out.append(len(vocab))
            elif v in vocab:
                out.append(vocab.index(v))
            elif _LENIENT.get():
                out.append(len(vocab))
                unknown.add(v)
            else:
                raise UserError(f"unknown {what} {v!r}: this generator was trained on {', '.join(vocab)}")
        new = sorted(v for v in unknown if (what, v) not in _WARNED)
        if new:
            _WARNED.update((what, v) for v in new)
            log.warning("%s %s never seen in training (trained on %s): encoded as the null %s (mask only)", what,
                        ", ".join(new), ", ".join(vocab), what)
        return torch.tensor(out, dtype=torch.long)

    def encode(self, vendor, group, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._encode(vendor, self.vendors, "vendor", n), self._encode(group, self.groups, "group", n)

    def to_dict(self) -> dict:
        return {"vendors": list(self.vendors), "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        return cls(tuple(d["vendors"]), tuple(d["groups"]))


def check_masks(masks: np.ndarray, shape: tuple[int, int], who: str) -> None:
    """Conditioning masks must be uint8 (N,H,W) in ACDC labels at the model's resolution."""
    if masks.ndim != 3 or tuple(masks.shape[1:]) != tuple(shape):
        raise UserError(f"generator '{who}': conditioning masks must be (N,{shape[0]},{shape[1]}), got {masks.shape}")
    if masks.dtype != np.uint8:
        raise UserError(f"generator '{who}': conditioning masks must be uint8, got {masks.dtype}")
    bad = sorted(set(np.unique(masks).tolist()) - set(range(N_LABELS)))
    if bad:
        raise UserError(f"generator '{who}': conditioning masks have labels {bad} outside 0 bg, 1 RV, 2 MYO, 3 LV")


def one_hot(masks: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``(N,H,W)`` integer labels -> ``(N,4,H,W)`` float one-hot; rows with ``keep=False`` -> zeros."""
    oh = F.one_hot(masks.long(), N_LABELS).permute(0, 3, 1, 2).float()
    if keep is not None:
        oh = oh * keep.view(-1, 1, 1, 1).float()
    return oh


def drop_conditions(
    mask_oh: torch.Tensor, vendor: torch.Tensor, group: torch.Tensor, vocab: Vocab, p: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Classifier-free-guidance dropout: each condition independently replaced by null with prob. ``p``."""
    if p <= 0:
        return mask_oh, vendor, group
    n = mask_oh.shape[0]
    r = torch.rand(3, n, generator=generator).to(mask_oh.device) if generator is not None else \
        torch.rand(3, n, device=mask_oh.device)
    mask_oh = mask_oh * (r[0] >= p).view(-1, 1, 1, 1).float()
    vendor = torch.where(r[1] < p, torch.full_like(vendor, vocab.null_vendor), vendor)
    group = torch.where(r[2] < p, torch.full_like(group, vocab.null_group), group)
    return mask_oh, vendor, group
