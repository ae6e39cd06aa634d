"""Canaries for one-run DP auditing: chosen before training, each trained on with probability 1/2.

``audit run --dp-epsilon E --dp-audit-canaries K`` draws ``K`` canary images from the training
slices with the run seed, before any training, and flips a fair coin for each: heads, it stays in
the training data; tails, it is removed. The plan is written to ``canaries.json`` in the run
directory before the fit starts (so the choice provably precedes training), the generator is
trained once on the rest, and the privacy stage scores every canary with the generator's
white-box score and turns the guesses into an epsilon lower bound
(:mod:`audit.privacy.one_run`, Steinke, Nasr and Jagielski 2023).

Why images of training subjects are valid canaries under a per-*subject* guarantee: flipping one
canary's coin changes one subject's data (one of their slices), so a run that is (eps, delta)-DP
per subject is (eps, delta)-DP with respect to each canary's coin, which is all the one-run
theorem asks. Canary images are taken out of the membership-inference sets (their membership
is decided by a coin, not by the split).

Only 2D slice generators take canaries: the cine generator trains on whole stacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError

__all__ = ["MIN_CANARIES", "CanaryPlan", "plan_canaries", "check_request"]

FORMAT = "cmr-audit/canaries/v1"
#: below this nothing useful can be proven: nine canaries, all guessed right, prove only eps >= 0.93 at 95 %
MIN_CANARIES = 10


@dataclass(frozen=True)
class CanaryPlan:
    """Which training slices are canaries (indices into the train split's slices, in the order
    :meth:`generators.data.SliceSet.from_prepared` gives them) and which of them are trained on."""

    indices: np.ndarray  # (K,) int, sorted
    included: np.ndarray  # (K,) bool
    subject_ids: np.ndarray  # (K,) str
    n_train_slices: int
    seed: int

    @property
    def k(self) -> int:
        return int(self.indices.size)

    def training_indices(self) -> np.ndarray:
        """Indices of the train slices the generator is fitted on: every non-canary slice and the
        included canaries."""
        keep = np.ones(self.n_train_slices, bool)
        keep[self.indices[~self.included]] = False
        return np.flatnonzero(keep)

    def member_indices(self) -> np.ndarray:
        """Train slices that are members for membership inference: the non-canary ones."""
        keep = np.ones(self.n_train_slices, bool)
        keep[self.indices] = False
        return np.flatnonzero(keep)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "seed": self.seed, "n_train_slices": self.n_train_slices,
                "indices": self.indices.tolist(), "included": self.included.tolist(),
                "subject_ids": self.subject_ids.tolist()}

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path, n_train_slices: int) -> "CanaryPlan":
        try:
            d = json.loads(Path(path).read_text("utf-8"))
            plan = cls(indices=np.asarray(d["indices"], int), included=np.asarray(d["included"], bool),
                       subject_ids=np.asarray(d["subject_ids"], str), n_train_slices=int(d["n_train_slices"]),
                       seed=int(d["seed"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: unreadable canary plan ({exc})") from None
        if d.get("format") != FORMAT or plan.n_train_slices != n_train_slices or not (
                plan.indices.shape == plan.included.shape == plan.subject_ids.shape):
            raise UserError(f"{path}: the canary plan does not match this run's training slices")
        return plan


def check_request(k: int, *, dp_enabled: bool, generator_data: str = "slices") -> None:
    """Refuse a canary request that cannot work, before any data is read (one line each)."""
    if k == 0:
        return
    if not dp_enabled:
        raise UserError("--dp-audit-canaries audits a DP claim: give --dp-epsilon or --dp-noise-multiplier too")
    if k < MIN_CANARIES:
        raise UserError(f"--dp-audit-canaries must be >= {MIN_CANARIES} (fewer canaries cannot prove a bound), got {k}")
    if generator_data != "slices":
        raise UserError("--dp-audit-canaries: canaries are 2D training images; this generator trains on whole "
                        "cine stacks and cannot take them")


def plan_canaries(subject_ids: np.ndarray, k: int, seed: int) -> CanaryPlan:
    """Draw ``k`` canary slices among the train slices (``subject_ids`` gives each slice's subject)
    and a fair coin for each, from the run seed alone. At most half the training slices may be
    canaries, so the generator still trains mostly on ordinary data."""
    n = int(len(subject_ids))
    if k > n // 2:
        raise UserError(f"--dp-audit-canaries {k}: the train split has {n} slices, so at most {n // 2} can be "
                        "canaries (half of them)")
    rng = np.random.default_rng([int(seed), 0xCA7A])
    idx = np.sort(rng.choice(n, size=k, replace=False))
    included = rng.random(k) < 0.5
    return CanaryPlan(indices=idx, included=included, subject_ids=np.asarray(subject_ids)[idx].astype(str),
                      n_train_slices=n, seed=int(seed))
