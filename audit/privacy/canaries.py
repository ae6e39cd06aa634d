"""Canaries for one-run DP auditing: chosen before training, each trained on with probability 1/2.

``audit run --dp-epsilon E --dp-audit-canaries K`` draws ``K`` canaries from the train split with
the run seed, before any training, and flips a fair coin for each: heads, it stays in the training
data; tails, it is removed. The plan is written to ``canaries.json`` in the run directory before
the fit starts (so the choice provably precedes training), the generator is trained once on the
rest, and the privacy stage scores every canary with a white-box attack and turns the guesses into
an epsilon lower bound (:mod:`audit.privacy.one_run`, Steinke, Nasr and Jagielski 2023).

**The canary unit** (``dp.audit_canary_unit``):

* ``subject`` (default): a canary is a whole training subject. The coin keeps *all* of its slices
  in the training data or takes all of them out, and its score is the mean white-box score over
  its slices. Why: the privacy unit of the DP guarantee is a subject (``dp.unit = subject``), so a
  run that is (eps, delta)-DP per subject is (eps, delta)-DP with respect to each subject's coin --
  exactly the hypothesis the one-run theorem tests, with nothing of a left-out canary left in
  training. The mean over slices is the subject-level score the membership audit reads
  (``subject_mean``): what a denoiser memorises is the subject, and averaging its slices'
  scores uses all of that evidence.
* ``image``: a canary is one training slice. Valid under per-subject DP too (one coin changes one
  subject's data), but weak: a left-out canary's neighbouring slices and its other cardiac phase
  stay in training, so it still looks like a member. Measured without DP (BENCHMARKS.md, issue
  26): the white-box score separated included from left-out image canaries with AUC 0.567,
  against 0.858 for member vs non-member images, and 31 of 50 guesses were right.

Subject canaries under a *slice*-level guarantee (``dp.unit = slice``) are refused: that guarantee
bounds one slice's coin, a whole subject's coin only through group privacy, so a bound above the
claim would not contradict it.

**Canary count against delta.** With ``m`` canaries at a given delta no outcome of the game can
prove more than its *ceiling* (every guess right, :func:`audit.privacy.one_run.game_ceiling`):
the p-value's ``2 m delta`` term and the few guesses cap it (32 subject canaries at delta 1/480
prove at most ~1.8; a claim of 8 needs thousands of canaries). :func:`check_game` refuses, before
training, an audit whose ceiling lies below the claimed epsilon -- it could never contradict the
claim, whatever the model leaks -- and, when the claim is not known before training
(``--dp-noise-multiplier``), warns; the results entry records the ceiling either way.

Canaries are taken out of the membership-inference member set (their membership is decided by a
coin, not by the split). Only 2D slice generators take canaries: the cine generator trains on
whole stacks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError
from audit.privacy import one_run
from generators.data import SliceSet

__all__ = ["MIN_CANARIES", "UNITS", "CanaryPlan", "CanarySet", "plan_canaries", "check_request", "check_game"]

log = logging.getLogger(__name__)

FORMAT = "cmr-audit/canaries/v2"
#: the image-canary plan written before canary units existed: it loads as an ``image`` plan
FORMAT_V1 = "cmr-audit/canaries/v1"
UNITS = ("subject", "image")
#: below this nothing useful can be proven: nine canaries, all guessed right, prove only eps >= 0.93 at 95 %
MIN_CANARIES = 10


@dataclass(frozen=True)
class CanarySet:
    """The canaries' training slices as the privacy stage scores them: ``owner[i]`` is the canary
    slice ``i`` belongs to; a canary's score is the mean score of its slices."""

    images: SliceSet
    owner: np.ndarray  # (len(images),) int in [0, K)
    included: np.ndarray  # (K,) bool
    subject_ids: np.ndarray  # (K,) str
    unit: str

    @property
    def k(self) -> int:
        return int(self.included.size)

    def canary_scores(self, slice_scores: np.ndarray) -> np.ndarray:
        """Per canary, the mean of its slices' scores (an image canary has one slice)."""
        s = np.asarray(slice_scores, np.float64)
        if s.shape != self.owner.shape:
            raise ValueError(f"expected {self.owner.size} slice scores, got shape {s.shape}")
        return np.bincount(self.owner, weights=s, minlength=self.k) / np.bincount(self.owner, minlength=self.k)


@dataclass(frozen=True)
class CanaryPlan:
    """Which train slices belong to which canary (indices into the train split's slices, in the
    order :meth:`generators.data.SliceSet.from_prepared` gives them) and which canaries are trained on."""

    unit: str
    subject_ids: np.ndarray  # (K,) str: each canary's subject
    included: np.ndarray  # (K,) bool
    owner: np.ndarray  # (n_train_slices,) int: the canary of each train slice, -1 = not a canary
    seed: int
    version: int = 2  # of the canaries.json it was read from (1: an image plan of an older cmr-audit)

    @property
    def k(self) -> int:
        return int(self.included.size)

    @property
    def n_train_slices(self) -> int:
        return int(self.owner.size)

    @property
    def indices(self) -> np.ndarray:
        """The canary slices (sorted)."""
        return np.flatnonzero(self.owner >= 0)

    def training_indices(self) -> np.ndarray:
        """Indices of the train slices the generator is fitted on: every non-canary slice and the
        slices of the included canaries."""
        return np.flatnonzero((self.owner < 0) | self.included[np.maximum(self.owner, 0)])

    def member_indices(self) -> np.ndarray:
        """Train slices that are members for membership inference: the non-canary ones."""
        return np.flatnonzero(self.owner < 0)

    def canary_set(self, train: SliceSet) -> CanarySet:
        idx = self.indices
        return CanarySet(images=train.subset(idx), owner=self.owner[idx], included=self.included,
                         subject_ids=self.subject_ids, unit=self.unit)

    def to_dict(self) -> dict:
        slices = [np.flatnonzero(self.owner == i).tolist() for i in range(self.k)]
        return {"format": FORMAT, "unit": self.unit, "seed": self.seed, "n_train_slices": self.n_train_slices,
                "subject_ids": self.subject_ids.tolist(), "included": self.included.tolist(), "slices": slices}

    def save(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path, train_subject_ids: np.ndarray) -> "CanaryPlan":
        """Read ``canaries.json`` back for the train slices whose subjects are ``train_subject_ids``;
        a plan that does not fit them (another split or cohort, a hand edit) is refused."""
        ids = np.asarray(train_subject_ids).astype(str)
        try:
            d = json.loads(Path(path).read_text("utf-8"))
            fmt = d.get("format")
            if fmt == FORMAT_V1:
                plan = _from_v1(d)
            elif fmt == FORMAT:
                plan = _from_v2(d)
            else:
                raise UserError(f"{path}: unknown canary plan format {fmt!r} (this cmr-audit reads {FORMAT} and "
                                f"{FORMAT_V1}); start a new run")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise UserError(f"{path}: unreadable canary plan ({type(exc).__name__}: {exc})") from None
        if not _fits(plan, ids):
            raise UserError(f"{path}: the canary plan does not match this run's training slices")
        return plan


def _from_v1(d: dict) -> CanaryPlan:
    """A v1 plan: one training slice per canary (``indices``), i.e. image canaries."""
    idx = np.asarray(d["indices"], int)
    owner = np.full(int(d["n_train_slices"]), -1)
    owner[idx] = np.arange(idx.size)
    return CanaryPlan(unit="image", subject_ids=np.asarray(d["subject_ids"], str),
                      included=np.asarray(d["included"], bool), owner=owner, seed=int(d["seed"]), version=1)


def _from_v2(d: dict) -> CanaryPlan:
    owner = np.full(int(d["n_train_slices"]), -1)
    for i, sl in enumerate(d["slices"]):
        sl = np.asarray(sl, int)
        if sl.size == 0 or (owner[sl] >= 0).any() or sl.min() < 0:
            raise ValueError(f"canary {i}: no slices, or slices of another canary")
        owner[sl] = i
    return CanaryPlan(unit=str(d["unit"]), subject_ids=np.asarray(d["subject_ids"], str),
                      included=np.asarray(d["included"], bool), owner=owner, seed=int(d["seed"]))


def _fits(plan: CanaryPlan, ids: np.ndarray) -> bool:
    """The plan's canaries are slices of their subjects (all of them, for subject canaries)."""
    k = plan.k
    if plan.unit not in UNITS or plan.owner.size != ids.size:
        return False
    if plan.subject_ids.shape != (k,) or plan.included.shape != (k,):
        return False
    if k == 0 or set(plan.owner[plan.owner >= 0].tolist()) != set(range(k)):
        return False
    on = plan.owner >= 0
    if not np.array_equal(ids[on], plan.subject_ids[plan.owner[on]]):
        return False
    if plan.unit == "image":
        return bool(np.bincount(plan.owner[on], minlength=k).max() == 1)
    # one canary per subject, and no slice of a canary subject left out of it
    return np.unique(plan.subject_ids).size == k and not np.isin(ids[~on], plan.subject_ids).any()


def check_request(k: int, *, dp_enabled: bool, generator_data: str = "slices", unit: str | None = "subject",
                  dp_unit: str = "subject", claimed_epsilon: float | None = None, delta: float = 0.0) -> None:
    """Refuse a canary request that cannot work, before any data is read (one line each). With an
    explicit ``delta`` and a known claim the game's ceiling is checked here too (:func:`check_game`);
    otherwise delta depends on the train split and the check waits for the plan. ``unit=None``: a
    plan was drawn already (a resumed run), its file decides the unit, nothing more is checked."""
    if k == 0:
        return
    if not dp_enabled:
        raise UserError("--dp-audit-canaries audits a DP claim: give --dp-epsilon or --dp-noise-multiplier too")
    if k < MIN_CANARIES:
        raise UserError(f"--dp-audit-canaries must be >= {MIN_CANARIES} (fewer canaries cannot prove a bound), got {k}")
    if generator_data != "slices":
        raise UserError("--dp-audit-canaries: canaries are 2D training images; this generator trains on whole "
                        "cine stacks and cannot take them")
    if unit is None:
        return
    if unit not in UNITS:
        raise UserError(f"dp.audit_canary_unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if unit == "subject" and dp_unit != "subject":
        raise UserError("--dp-audit-canaries: subject canaries audit a per-subject guarantee, but dp.unit is "
                        f"{dp_unit!r} (a whole subject's coin is covered only by group privacy); use "
                        "--set dp.audit_canary_unit=image or dp.unit=subject")
    if delta > 0 and claimed_epsilon is not None:
        check_game(k, delta=delta, claimed_epsilon=claimed_epsilon, unit=unit)


def check_game(k: int, *, delta: float, claimed_epsilon: float | None, unit: str = "subject",
               confidence: float = 0.95) -> float:
    """The ceiling of a one-run game with ``k`` canaries at ``delta`` (the largest bound any outcome
    can prove, :func:`audit.privacy.one_run.game_ceiling`). Below a known claim: one-line
    :class:`UserError` (the audit could never contradict it); with the claim unknown before
    training (``--dp-noise-multiplier``): a warning."""
    grid = one_run.default_guess_grid(k)
    ceiling = one_run.game_ceiling(k, delta=delta, confidence=confidence, grid=grid)
    if claimed_epsilon is not None and ceiling < claimed_epsilon:
        raise UserError(
            f"--dp-audit-canaries {k}: {k} canary {unit}s at delta {delta:.3g} can prove at most epsilon "
            f"{ceiling:.2f} (every guess right, guess counts {list(grid)}, {confidence:.0%}), below the claimed "
            f"{claimed_epsilon:g}, so the audit could never contradict the claim; plant more canaries, lower "
            f"delta (--dp-delta), or audit a claim <= {ceiling:.2f}")
    if claimed_epsilon is None:
        log.warning("one-run DP audit: the claimed epsilon is not known before training (--dp-noise-multiplier); "
                    "%d canary %ss at delta %.3g can prove at most epsilon %.2f, so a claim above that cannot be "
                    "contradicted (recorded in the results entry)", k, unit, delta, ceiling)
    return ceiling


def plan_canaries(subject_ids: np.ndarray, k: int, seed: int, unit: str = "subject") -> CanaryPlan:
    """Draw ``k`` canaries among the train slices (``subject_ids`` gives each slice's subject) and a
    fair coin for each, from the run seed alone: ``k`` subjects (all their slices) or ``k`` slices.
    At most half the training subjects (slices) may be canaries, so the generator still trains
    mostly on ordinary data."""
    ids = np.asarray(subject_ids).astype(str)
    n = int(ids.size)
    owner = np.full(n, -1)
    if unit == "subject":
        subjects = np.unique(ids)
        if k > subjects.size // 2:
            raise UserError(f"--dp-audit-canaries {k}: the train split has {subjects.size} subjects, so at most "
                            f"{subjects.size // 2} can be canary subjects (half of them); plant fewer, or image "
                            "canaries (--set dp.audit_canary_unit=image)")
        rng = np.random.default_rng([int(seed), 0xCA7A, 1])
        chosen = subjects[np.sort(rng.choice(subjects.size, size=k, replace=False))]
        included = rng.random(k) < 0.5
        for i, sid in enumerate(chosen):
            owner[ids == sid] = i
        return CanaryPlan(unit=unit, subject_ids=chosen, included=included, owner=owner, seed=int(seed))
    if unit != "image":
        raise UserError(f"dp.audit_canary_unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if k > n // 2:
        raise UserError(f"--dp-audit-canaries {k}: the train split has {n} slices, so at most {n // 2} can be "
                        "canaries (half of them)")
    rng = np.random.default_rng([int(seed), 0xCA7A])  # the stream of v1 image plans: same seed, same canaries
    idx = np.sort(rng.choice(n, size=k, replace=False))
    included = rng.random(k) < 0.5
    owner[idx] = np.arange(k)
    return CanaryPlan(unit=unit, subject_ids=ids[idx], included=included, owner=owner, seed=int(seed))
