"""Reference generators that calibrate the audit: inputs whose right verdict is known in advance.

* ``copycat`` returns training images, lightly augmented (a gamma change within 5 % and
  Gaussian noise of 1 % of the range) with their own masks: the leak every privacy audit
  must catch, and near-perfect fidelity -- which is why fidelity alone never passes.
* ``holdout`` returns real images of subjects that are neither members nor the
  membership-inference non-members (the ``reference`` split, handed over in the fit
  context): no leak, perfect realism. Using the ``holdout`` split itself would make every
  non-member an exact "copy" and invert the attacks.
* ``noise`` returns mask-shaped noise: each label region gets a random mean intensity and
  strong Gaussian noise. It follows the mask loosely and has no realism.
* ``cartoon`` paints the conditioning mask with the training set's mean intensity per label and
  blurs it slightly: perfect anatomy and no texture. Judge Dice is lenient and passes it; the
  fidelity metrics must not (they read texture, not only the layout of the mask).
* ``external`` audits a sample set made by any other tool (``audit run --samples FILE``).

None of them learns weights; their checkpoints still follow the ``config.json`` +
``safetensors`` rule (copycat/holdout store the images they replay).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError
from generators import checkpoint as ckpt
from generators.base import FitContext, Generator
from generators.data import SliceSet
from generators.sampleset import SampleSet


def _conditions_masks(conditions: Mapping[str, Any] | None, n: int | None) -> tuple[np.ndarray | None, int]:
    if conditions is None or conditions.get("masks") is None:
        if n is None:
            raise UserError("sample() needs n or conditions with masks")
        return None, int(n)
    masks = np.asarray(conditions["masks"])
    if masks.ndim != 3 or masks.dtype != np.uint8:
        raise UserError(f"conditioning masks must be uint8 (N,H,W), got {masks.dtype} {masks.shape}")
    return masks, masks.shape[0] if n is None else int(n)


def balanced_draw(pool_size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` pool indices, every index used ``n // pool_size`` or one more times, in random order.

    A replay reference should reproduce its pool's empirical distribution. Drawing with
    replacement adds multinomial noise instead: at n = 2.6 x the pool some slices appear 6 times
    and others never, so one odd slice can move a rate by several points. Concatenated random
    permutations keep every slice's weight within one copy of the others (a draw without
    replacement when ``n <= pool_size``).
    """
    if pool_size < 1:
        raise UserError("cannot replay an empty pool")
    reps = -(-n // pool_size)
    return np.concatenate([rng.permutation(pool_size) for _ in range(reps)])[:n] if n else np.zeros(0, np.int64)


class _Replay(Generator):
    """Shared code of copycat/holdout: keep a pool of real slices, replay them."""

    trainable: ClassVar[bool] = False
    augment: ClassVar[bool] = False
    mask_source: ClassVar[str] = "the expert masks of the replayed real images"

    def __init__(self) -> None:
        self.pool: SliceSet | None = None

    def _set_pool(self, pool: SliceSet) -> None:
        keep = pool.labelled if pool.labelled.any() else np.ones(len(pool), bool)
        self.pool = pool.subset(np.flatnonzero(keep))

    def sample(self, n=None, *, conditions=None, seed=0, **sampler) -> SampleSet:
        if self.pool is None:
            raise UserError(f"generator '{self.name}' has not been fitted")
        _, n = _conditions_masks(conditions, n)
        rng = np.random.default_rng(seed)
        idx = balanced_draw(len(self.pool), n, rng)
        images = self.pool.images[idx].copy()
        if self.augment:
            gamma = rng.uniform(0.95, 1.05, size=(n, 1, 1)).astype(np.float32)
            images = np.clip(images, 0, 1) ** gamma + rng.normal(0, 0.01, images.shape).astype(np.float32)
            images = np.clip(images, 0, 1).astype(np.float32)
        return SampleSet(
            images=images, masks=self.pool.masks[idx].copy(), spacing=self.pool.spacing,
            subject_ids=self.pool.subject_ids[idx], vendor=self.pool.vendor[idx], group=self.pool.group[idx],
        )

    def save(self, directory) -> None:
        p = self.pool
        if p is None:
            raise UserError(f"generator '{self.name}' has not been fitted; nothing to save")
        ckpt.save(
            directory, generator=self.name, model_config={}, step=0,
            weights={"images": torch.from_numpy(p.images), "masks": torch.from_numpy(p.masks)},
            state={"subject_ids": p.subject_ids.tolist(), "vendor": p.vendor.tolist(), "group": p.group.tolist(),
                   "spacing": p.spacing.tolist()},
        )

    @classmethod
    def load(cls, directory) -> "_Replay":
        c = ckpt.load(directory, generator=cls.name)
        g = cls()
        n = c.weights["images"].shape[0]
        g.pool = SliceSet(
            images=c.weights["images"].numpy(), masks=c.weights["masks"].numpy(), labelled=np.ones(n, bool),
            subject_ids=np.array(c.state["subject_ids"]), vendor=np.array(c.state["vendor"]),
            group=np.array(c.state["group"]), spacing=np.array(c.state["spacing"], np.float32),
        )
        return g


class CopycatGenerator(_Replay):
    name = "copycat"
    family = "reference"
    description = "reference: returns training images, lightly augmented (a leak the audit must catch)"
    augment = True

    def fit(self, train: SliceSet, config: Any, context: FitContext | None = None) -> None:
        self._set_pool(train)


class HoldoutGenerator(_Replay):
    name = "holdout"
    family = "reference"
    description = "reference: returns real images of unseen subjects (reference split): no leak, perfect realism"

    def fit(self, train: SliceSet, config: Any, context: FitContext | None = None) -> None:
        if context is None or context.reference is None or len(context.reference) == 0:
            raise UserError("generator 'holdout' needs real images of unseen subjects (the reference split is empty)")
        overlap = set(context.reference.subject_ids) & set(train.subject_ids)
        if overlap:
            raise UserError(f"generator 'holdout': reference subjects overlap the training split ({sorted(overlap)[:3]})")
        self._set_pool(context.reference)


class NoiseGenerator(Generator):
    name = "noise"
    family = "reference"
    description = "reference: mask-shaped noise (no realism)"
    trainable = False

    def __init__(self) -> None:
        self.spacing: np.ndarray | None = None
        self.shape: tuple[int, int] | None = None

    def fit(self, train: SliceSet, config: Any, context: FitContext | None = None) -> None:
        self.spacing, self.shape = train.spacing, train.shape

    def sample(self, n=None, *, conditions=None, seed=0, **sampler) -> SampleSet:
        if self.spacing is None or self.shape is None:
            raise UserError("generator 'noise' has not been fitted")
        masks, n = _conditions_masks(conditions, n)
        rng = np.random.default_rng(seed)
        if masks is None:
            masks = np.zeros((n, *self.shape), np.uint8)
        masks = masks[:n]
        means = rng.uniform(0.1, 0.9, size=(n, 4)).astype(np.float32)
        images = np.take_along_axis(means, masks.reshape(n, -1).astype(np.int64), axis=1).reshape(masks.shape)
        images = np.clip(images + rng.normal(0, 0.25, images.shape).astype(np.float32), 0, 1).astype(np.float32)
        extra = {k: np.asarray(conditions[k])[:n] for k in ("subject_ids", "vendor", "group") if conditions and conditions.get(k) is not None}
        return SampleSet(images=images, masks=masks.copy(), spacing=self.spacing, **extra)

    def _weights(self) -> dict[str, np.ndarray] | None:
        """What the checkpoint stores (``None``: not fitted); subclasses add their own arrays."""
        if self.spacing is None or self.shape is None:
            return None
        return {"spacing": np.asarray(self.spacing, np.float32)}

    def _restore(self, weights: Mapping[str, np.ndarray]) -> None:
        self.spacing = weights["spacing"]

    def save(self, directory) -> None:
        weights = self._weights()
        if weights is None:
            raise UserError(f"generator '{self.name}' has not been fitted; nothing to save")
        ckpt.save(directory, generator=self.name, model_config={"shape": list(self.shape)}, step=0,
                  weights={k: torch.from_numpy(v) for k, v in weights.items()})

    @classmethod
    def load(cls, directory) -> "NoiseGenerator":
        c = ckpt.load(directory, generator=cls.name)
        g = cls()
        g.shape = tuple(c.model_config["shape"])
        g._restore({k: v.numpy() for k, v in c.weights.items()})
        return g


class CartoonGenerator(NoiseGenerator):
    name = "cartoon"
    family = "reference"
    description = "reference: the mask painted with mean label intensities (right anatomy, no realism)"

    BLUR_SIGMA_PX = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.means: np.ndarray | None = None

    def fit(self, train: SliceSet, config: Any, context: FitContext | None = None) -> None:
        train.require_masks(self.name)
        super().fit(train, config, context)
        lab = train.subset(np.flatnonzero(train.labelled))
        self.means = np.array([lab.images[lab.masks == k].mean() if (lab.masks == k).any() else 0.0 for k in range(4)],
                              np.float32)

    def sample(self, n=None, *, conditions=None, seed=0, **sampler) -> SampleSet:
        from scipy.ndimage import gaussian_filter  # lazy: scipy only on this path

        if self.means is None or self.spacing is None:
            raise UserError("generator 'cartoon' has not been fitted")
        masks, n = _conditions_masks(conditions, n)
        if masks is None:
            raise UserError("generator 'cartoon' paints conditioning masks: pass conditions with masks")
        masks = masks[:n]
        images = gaussian_filter(self.means[masks.astype(np.int64)], sigma=(0, self.BLUR_SIGMA_PX, self.BLUR_SIGMA_PX))
        extra = {k: np.asarray(conditions[k])[:n] for k in ("subject_ids", "vendor", "group") if conditions.get(k) is not None}
        return SampleSet(images=np.clip(images, 0, 1).astype(np.float32), masks=masks.copy(), spacing=self.spacing, **extra)

    def _weights(self) -> dict[str, np.ndarray] | None:
        base = super()._weights()
        return None if base is None or self.means is None else {**base, "means": self.means}

    def _restore(self, weights: Mapping[str, np.ndarray]) -> None:
        super()._restore(weights)
        self.means = weights["means"]


class ExternalGenerator(Generator):
    """Wraps an existing sample set (``generator_options.samples``); nothing is trained."""

    name = "external"
    family = "external"
    description = "a sample set from any other tool (audit run --samples FILE)"
    trainable = False
    mask_source: ClassVar[str] = "the masks shipped with the sample set, made by the other tool"

    def __init__(self) -> None:
        self.path: Path | None = None

    @classmethod
    def check_options(cls, given: Mapping[str, Any]) -> None:
        unknown = sorted(set(given) - {"samples"})
        if unknown:
            raise UserError(f"generator 'external': unknown option(s) {unknown}; its one option is samples (--samples)")
        if not given.get("samples"):
            raise UserError("generator 'external' needs --samples FILE.npz (generator_options.samples)")
        if not isinstance(given["samples"], str):
            raise UserError(f"generator_options.samples must be the path of an .npz file, got {given['samples']!r}")

    def fit(self, train: SliceSet, config: Any, context: FitContext | None = None) -> None:
        path = (getattr(config, "generator_options", {}) or {}).get("samples")
        if not path:
            raise UserError("generator 'external' needs --samples FILE.npz")
        self.path = Path(path)
        s = SampleSet.load(self.path)  # validate now, before any audit runs
        if s.images.shape[-2:] != train.shape:
            raise UserError(
                f"{self.path}: images are {s.images.shape[-2]}x{s.images.shape[-1]} but the cohort is prepared at "
                f"{train.shape[0]}x{train.shape[1]}; resample the samples or set --set data.size=..."
            )
        if not np.allclose(s.pixel_spacing, train.spacing, rtol=0.02):
            raise UserError(f"{self.path}: spacing {s.pixel_spacing.tolist()} mm differs from the cohort's {train.spacing.tolist()} mm")

    def sample(self, n=None, *, conditions=None, seed=0, **sampler) -> SampleSet:
        if self.path is None:
            raise UserError("generator 'external' has not been given a sample set")
        return SampleSet.load(self.path)

    def save(self, directory) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)

        atomic_write_json(Path(directory) / "config.json", {"format": ckpt.FORMAT, "generator": self.name,
                                                             "samples": str(self.path)})

    @classmethod
    def load(cls, directory) -> "ExternalGenerator":
        g = cls()
        g.path = Path(json.loads((Path(directory) / "config.json").read_text())["samples"])
        return g
