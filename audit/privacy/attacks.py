"""Membership-inference attacks: one small class each, one interface.

Every attack has a ``name`` (used in results and report), ``kind`` (``black-box`` uses only
the synthetic sample set; ``white-box`` queries the generator), ``fit(knowledge)`` on the
attacker's knowledge (synthetic samples, the ``reference`` split as population data, the
generator for white-box attacks -- never the member labels) and
``score(images, masks=None, **conditions) -> (N,)`` with **higher = more member-like**.

Black-box:

* :class:`DistanceToClosestSynthetic` -- GAN-Leaks full black-box (Chen et al. 2020,
  *GAN-Leaks: A taxonomy of membership inference attacks against generative models*, CCS):
  score = minus the distance to the closest synthetic sample. Pixel space (Euclidean) and the
  PCA embedding.
* :class:`Domias` -- DOMIAS (van Breugel et al. 2023, *Membership inference attacks against
  synthetic data through overfitting detection*, AISTATS): score = log p_synthetic(x) -
  log p_reference(x), both densities estimated with Gaussian KDE (Scott's bandwidth) on the
  first components of the reference-fitted embedding.
* :class:`MonteCarloSet` -- Monte-Carlo attack (Hilprecht et al. 2019, *Monte Carlo and
  reconstruction membership inference attacks against generative models*, PETS): score = the
  fraction of synthetic samples inside an epsilon-ball around x; epsilon by a median heuristic
  on attacker data (median distance from a reference image to its nearest non-identical
  synthetic sample).

White-box (through ``generator.score``, dispatched on what the generator offers):

* :class:`LossThreshold` -- Matsumoto et al. 2023 (*Membership inference attacks against
  diffusion models*, IEEE S&P Workshops); Yeom et al. 2018 for the loss-threshold idea:
  score = minus the denoising loss at a timestep chosen by a sweep on attacker knowledge (see
  the class).
* :class:`GeneratorScore` -- the generator's own per-image score: VAE negative ELBO-like loss
  (the reconstruction attack family, Hilprecht 2019) and the GAN discriminator logit (LOGAN,
  Hayes et al. 2019, *LOGAN: Membership inference attacks against generative models*, PETS).
"""

from __future__ import annotations

import abc
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.stats import gaussian_kde

from audit.core.plugins import ATTACKS, Plugin, load
from audit.privacy import space
from audit.privacy.metrics import auc
from generators.base import Generator

log = logging.getLogger(__name__)


@dataclass
class Knowledge:
    """What the attacker knows: synthetic samples, population (reference) data, maybe the model."""

    synthetic: np.ndarray  # (M, H, W) float32
    reference: np.ndarray  # (R, H, W) float32
    reference_masks: np.ndarray | None = None
    reference_conditions: dict[str, np.ndarray] = field(default_factory=dict)
    synthetic_masks: np.ndarray | None = None
    synthetic_conditions: dict[str, np.ndarray] = field(default_factory=dict)
    generator: Any = None
    embedding: space.Embedding | None = None
    seed: int = 0

    def embed(self) -> space.Embedding:
        if self.embedding is None:
            self.embedding = space.Embedding(seed=self.seed).fit(self.reference)
        return self.embedding


class Attack(abc.ABC):
    """Interface of every attack (see the module docstring)."""

    name: ClassVar[str] = "attack"
    kind: ClassVar[str] = "black-box"
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def fit(self, knowledge: Knowledge) -> "Attack":
        """Learn whatever the attack needs from the attacker's knowledge; returns self."""

    @abc.abstractmethod
    def score(self, images: np.ndarray, masks: np.ndarray | None = None, **conditions: Any) -> np.ndarray:
        """Per-image membership scores (higher = more member-like)."""

    def info(self) -> dict[str, Any]:
        """Choices made in ``fit`` (for the report), plain JSON types."""
        return {}


# --------------------------------------------------------------------------- black-box


class DistanceToClosestSynthetic(Attack):
    kind = "black-box"

    def __init__(self, space_name: str = "pixel"):
        if space_name not in ("pixel", "pca"):
            raise ValueError(f"unknown space {space_name!r}")
        self.space_name = space_name
        self.name = "gan_leaks_dcr" if space_name == "pixel" else "gan_leaks_dcr_pca"  # type: ignore[misc]
        self.description = (f"GAN-Leaks full black-box: minus the Euclidean distance to the closest synthetic sample "
                            f"({'pixel space' if space_name == 'pixel' else 'PCA embedding of reference images'})")
        self._synthetic: np.ndarray | None = None
        self._emb: space.Embedding | None = None

    def _features(self, images: np.ndarray) -> np.ndarray:
        return space.flatten(images) if self._emb is None else self._emb.transform(images)

    def fit(self, knowledge: Knowledge) -> "DistanceToClosestSynthetic":
        self._emb = knowledge.embed() if self.space_name == "pca" else None
        self._synthetic = self._features(knowledge.synthetic)
        return self

    def score(self, images, masks=None, **conditions) -> np.ndarray:
        d, _ = space.nearest(self._features(images), self._synthetic, k=1)
        return -d[:, 0].astype(np.float64)


class Domias(Attack):
    name = "domias"
    kind = "black-box"
    description = ("DOMIAS: log density of synthetic minus log density of reference data (Gaussian KDE, Scott "
                   "bandwidth) on the first PCA components fitted on reference images")

    def __init__(self, dims: int = 5):
        self.dims = dims
        self._emb: space.Embedding | None = None
        self._kde_syn = None
        self._kde_ref = None
        self._d = 0

    def fit(self, knowledge: Knowledge) -> "Domias":
        self._emb = knowledge.embed()
        syn = self._emb.transform(knowledge.synthetic).astype(np.float64)
        ref = self._emb.transform(knowledge.reference).astype(np.float64)
        # a KDE needs more points than dimensions for a non-singular covariance
        self._d = int(max(1, min(self.dims, syn.shape[1], len(syn) // 4, len(ref) // 4)))
        self._kde_syn = gaussian_kde(syn[:, : self._d].T)
        self._kde_ref = gaussian_kde(ref[:, : self._d].T)
        return self

    def score(self, images, masks=None, **conditions) -> np.ndarray:
        z = self._emb.transform(images).astype(np.float64)[:, : self._d].T
        return self._kde_syn.logpdf(z) - self._kde_ref.logpdf(z)

    def info(self) -> dict[str, Any]:
        return {"dims": self._d}


class MonteCarloSet(Attack):
    """Hilprecht et al. (2019) Monte-Carlo set attack in the PCA embedding.

    ``epsilon`` (median heuristic on attacker data only): the median, over reference images
    (non-members by construction), of the distance to the nearest synthetic sample, ignoring
    exact duplicates (distance <= 1e-6 of the median pairwise scale) so that a generator that
    replays reference images (the ``holdout`` reference generator) does not collapse it to 0.
    A member whose near-copies were generated has several samples inside this ball; a typical
    non-member about one.
    """

    name = "monte_carlo"
    kind = "black-box"
    description = ("Monte-Carlo set attack: fraction of synthetic samples within epsilon (PCA embedding); epsilon = "
                   "median distance from a reference image to its nearest non-identical synthetic sample")

    def __init__(self, k: int = 16):
        self.k = k
        self._emb: space.Embedding | None = None
        self._syn: np.ndarray | None = None
        self.epsilon = float("nan")

    def fit(self, knowledge: Knowledge) -> "MonteCarloSet":
        self._emb = knowledge.embed()
        self._syn = self._emb.transform(knowledge.synthetic)
        d, _ = space.nearest(self._emb.transform(knowledge.reference), self._syn, k=self.k)
        scale = float(np.median(d[:, -1])) or 1.0
        d = np.where(d <= 1e-6 * scale, np.inf, d)  # exact duplicates of a reference image
        nn = d.min(axis=1)
        self.epsilon = float(np.median(nn[np.isfinite(nn)])) if np.isfinite(nn).any() else scale
        return self

    def score(self, images, masks=None, **conditions) -> np.ndarray:
        z = self._emb.transform(images)
        return space.count_within(z, self._syn, self.epsilon) / float(len(self._syn))

    def info(self) -> dict[str, Any]:
        return {"epsilon": self.epsilon}


# --------------------------------------------------------------------------- white-box


def _conditions_kwargs(conditions: dict[str, Any], fn: Any = None) -> dict[str, Any]:
    """``vendor``/``group`` keyword arguments, only those ``fn`` (a score method) accepts."""

    keys = ("vendor", "group")
    if fn is not None:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins
            params = {}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            keys = tuple(k for k in keys if k in params)
    return {k: conditions[k] for k in keys if conditions.get(k) is not None}


class GeneratorScore(Attack):
    """The generator's own per-image score (``generator.score``), e.g. VAE ELBO or GAN logit."""

    kind = "white-box"

    def __init__(self, name: str, description: str, batch_cost: bool = True):
        self.name = name  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self._gen = None
        self.seed = 0
        self.images_per_s = float("nan")

    def fit(self, knowledge: Knowledge) -> "GeneratorScore":
        self._gen = knowledge.generator
        self.seed = knowledge.seed
        return self

    def score(self, images, masks=None, **conditions) -> np.ndarray:
        t0 = time.perf_counter()
        out = np.asarray(self._gen.score(images, masks, seed=self.seed, **_conditions_kwargs(conditions, self._gen.score)), np.float64)
        self.images_per_s = len(images) / max(time.perf_counter() - t0, 1e-9)
        return out

    def info(self) -> dict[str, Any]:
        return {"images_per_s": self.images_per_s}


class LossThreshold(Attack):
    """Loss threshold on the denoising loss (Matsumoto et al. 2023).

    The timestep is chosen among ``timesteps`` **without member labels**: for each candidate,
    up to ``sweep_images`` synthetic samples and as many reference images are scored, and the
    timestep whose scores best separate the two in the attack's direction (largest AUC of
    synthetic vs reference, lower loss = member) wins. Rationale: a model that memorised reproduces its training images, so its
    own samples stand in for members and the reference split for non-members; the sweep never
    sees a member or non-member image. Scores then average ``repeats`` noise draws.
    """

    name = "loss_threshold"
    kind = "white-box"
    description = "loss threshold: minus the denoising loss at a timestep chosen by a sweep on synthetic vs reference data"

    def __init__(self, timesteps: tuple[int, ...] = (20, 100, 300, 600), repeats: int = 2, sweep_images: int = 32,
                 sweep_repeats: int = 1):
        self.timesteps = tuple(int(t) for t in timesteps)
        self.repeats = int(repeats)
        self.sweep_images = int(sweep_images)
        self.sweep_repeats = int(sweep_repeats)
        self.timestep: int | None = None
        self.sweep: dict[str, float] = {}
        self._gen = None
        self.seed = 0
        self.images_per_s = float("nan")

    def fit(self, knowledge: Knowledge) -> "LossThreshold":
        self._gen = knowledge.generator
        self.seed = knowledge.seed
        rng = np.random.default_rng([knowledge.seed, 17])
        k = min(self.sweep_images, len(knowledge.synthetic), len(knowledge.reference))
        si = np.sort(rng.choice(len(knowledge.synthetic), k, replace=False))
        ri = np.sort(rng.choice(len(knowledge.reference), k, replace=False))

        def pick(arr, i):
            return None if arr is None else arr[i]

        syn_c = {key: v[si] for key, v in knowledge.synthetic_conditions.items() if v is not None}
        ref_c = {key: v[ri] for key, v in knowledge.reference_conditions.items() if v is not None}
        labels = np.r_[np.ones(k, bool), np.zeros(k, bool)]
        best, best_auc = self.timesteps[0], -1.0
        for t in self.timesteps:
            s = self._call(knowledge.synthetic[si], pick(knowledge.synthetic_masks, si), t, self.sweep_repeats, syn_c)
            r = self._call(knowledge.reference[ri], pick(knowledge.reference_masks, ri), t, self.sweep_repeats, ref_c)
            a = auc(np.r_[s, r], labels)
            self.sweep[str(t)] = a
            if a > best_auc:
                best, best_auc = t, a
        self.timestep = int(best)
        log.info("%s: timestep sweep (synthetic-vs-reference AUC) %s -> t=%d", self.name, self.sweep, self.timestep)
        return self

    def _call(self, images, masks, timestep: int, repeats: int, conditions) -> np.ndarray:
        return self._gen.score(images, masks, seed=self.seed, timestep=timestep, repeats=repeats,
                               **_conditions_kwargs(conditions, self._gen.score))

    def score(self, images, masks=None, **conditions) -> np.ndarray:
        t0 = time.perf_counter()
        out = np.asarray(self._call(images, masks, self.timestep, self.repeats, conditions), np.float64)
        self.images_per_s = len(images) / max(time.perf_counter() - t0, 1e-9)
        return out

    def info(self) -> dict[str, Any]:
        return {"timestep": self.timestep, "repeats": self.repeats, "sweep_auc_synthetic_vs_reference": self.sweep,
                "images_per_s": self.images_per_s}


class ProximalInitialization(LossThreshold):
    """PIA (Kong et al. 2024): the noise estimate at t = 0 initialises ``x_t`` deterministically and
    the attack compares the estimate at ``t`` with it (``generator.pia_score``). Same label-free
    timestep sweep as :class:`LossThreshold`; deterministic, so one evaluation per image."""

    name = "pia"
    description = ("PIA (proximal initialisation): minus the l4 gap between the noise estimates at t and at 0, x_t "
                   "built from the t = 0 estimate; timestep by the label-free sweep")

    def __init__(self, timesteps: tuple[int, ...] = (20, 100, 300, 600), sweep_images: int = 32):
        super().__init__(timesteps=timesteps, repeats=1, sweep_images=sweep_images, sweep_repeats=1)

    def _call(self, images, masks, timestep: int, repeats: int, conditions) -> np.ndarray:
        return self._gen.pia_score(images, masks, seed=self.seed, timestep=timestep,
                                   **_conditions_kwargs(conditions, self._gen.pia_score))


def black_box_attacks() -> list[Attack]:
    return [DistanceToClosestSynthetic("pixel"), DistanceToClosestSynthetic("pca"), Domias(), MonteCarloSet()]


def white_box_attacks(generator: Any) -> tuple[list[Attack], dict[str, str]]:
    """White-box attacks the generator supports, and ``{name: reason}`` for those it does not."""
    if generator is None:
        return [], {"loss_threshold": "no generator was given to the audit (black-box sample set only)"}

    own_score = getattr(type(generator), "score", None)
    if not callable(getattr(generator, "score", None)) or own_score is Generator.score:
        name = getattr(generator, "name", type(generator).__name__)
        return [], {"loss_threshold": f"generator '{name}' offers no per-image white-box score (score() not implemented): "
                                      "white-box attacks need one"}
    family = getattr(generator, "family", "")
    if hasattr(generator, "objective"):  # diffusion / flow: loss at a swept timestep, and PIA
        attacks: list[Attack] = [LossThreshold()]
        if callable(getattr(generator, "pia_score", None)):
            attacks.append(ProximalInitialization())
        return attacks, {}
    if family == "vae":
        return [GeneratorScore("elbo", "VAE: minus the per-image ELBO-like loss (posterior mean)")], {}
    if family == "gan":
        return [GeneratorScore("logan", "LOGAN: mean discriminator logit of each image with its mask")], {}
    return [GeneratorScore("generator_score", f"the generator's own per-image score ({family or 'unknown family'})")], {}


def check_attack(obj: Any) -> str:
    """'' for a usable attack plugin, else why it is not one."""
    if not isinstance(obj, Attack):
        return f"{type(obj).__name__} is not a subclass of audit.privacy.attacks.Attack"
    if obj.kind not in ("black-box", "white-box"):
        return f"attack kind must be black-box or white-box, got {obj.kind!r}"
    return ""


def plugin_attacks() -> list[Plugin]:
    """The ``cmr_audit.attacks`` entry points, loaded and checked (broken ones carry their error)."""
    return load(ATTACKS, check_attack)
