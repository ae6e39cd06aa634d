"""Which real subjects the utility audit trains, validates and evaluates on
(:class:`SubjectPlan`; the design is described in :mod:`audit.pipeline.utility_stage`), and the
annotated 2D slices of a list of subjects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audit.core.errors import UserError
from generators.data import SliceSet

@dataclass
class SubjectPlan:
    """Which real subjects train, validate and evaluate (see the module docstring)."""

    vendors: list[str]
    heldout_vendor: str | None
    train: list[str]
    val: list[str]
    evaluate: dict[str, list[str]]
    """vendor -> evaluation subjects (every cohort vendor is a key, possibly with an empty list)"""
    excluded: dict[str, int] = field(default_factory=dict)
    """vendor -> annotated subjects the generator saw (train, conditioning or sample ids)"""
    external: str | None = None
    """the external evaluation folder (``--utility-test-data``) whose vendors were added by
    :meth:`add_external`, or ``None``"""

    def add_external(self, source: str, evaluate: dict[str, list[str]]) -> None:
        """Add the external cohort's vendors (``external@<vendor>`` keys) and their subjects."""
        clash = set(evaluate) & set(self.vendors)
        if clash:
            raise UserError(f"utility: external vendor keys {sorted(clash)} clash with the run cohort's vendors")
        self.external = source
        self.vendors = [*self.vendors, *evaluate]
        self.evaluate.update(evaluate)

    def missing_reason(self, vendor: str) -> str:
        role = "the held-out vendor" if vendor == self.heldout_vendor else "vendor"
        return (f"no evaluation subject of {role} {vendor}: all {self.excluded.get(vendor, 0)} of its annotated subjects "
                "trained the generator or conditioned the samples")


def _annotated(prepared, ids) -> list[str]:
    return [i for i in ids if prepared[i].mask is not None and bool(np.any(prepared[i].labelled))]


def plan_subjects(prepared, splits, *, condition_split: str, sample_subject_ids, heldout_vendor: str | None,
                  val_fraction: float, seed: int) -> SubjectPlan:
    """Split the cohort's annotated subjects into real training, validation and evaluation
    subjects; raise :class:`UserError` when there is too little real training data."""
    vendors = list(prepared.vendors)
    if heldout_vendor is not None and heldout_vendor not in vendors:
        raise UserError(f"utility: held-out vendor {heldout_vendor!r} is not in the cohort (vendors: {', '.join(vendors)})")
    a = splits.assignments
    exposed = set(a.get("train") or []) | set(a.get(condition_split) or [])
    if sample_subject_ids is not None:
        exposed |= set(np.asarray(sample_subject_ids).astype(str).tolist()) & set(prepared.ids)
    annotated = _annotated(prepared, prepared.ids)
    train = sorted(i for i in _annotated(prepared, a.get("train") or []) if prepared[i].vendor != heldout_vendor)
    if len(train) < 2:
        raise UserError(f"utility: the train split has {len(train)} annotated subject(s) of the seen vendors; the real "
                        "baseline needs at least 2 (one is carved off for validation)")
    rng = np.random.default_rng([seed, 12])
    n_val = min(len(train) - 1, max(1, int(round(val_fraction * len(train)))))
    perm = [train[i] for i in rng.permutation(len(train))]
    val, train = sorted(perm[:n_val]), sorted(perm[n_val:])
    evaluate = {v: sorted(i for i in annotated if prepared[i].vendor == v and i not in exposed) for v in vendors}
    excluded = {v: sum(1 for i in annotated if prepared[i].vendor == v and i in exposed) for v in vendors}
    return SubjectPlan(vendors, heldout_vendor, train, val, evaluate, excluded)


def labelled_slices(prepared, ids: list[str], frames: str, *, windows=None) -> SliceSet | None:
    """Annotated 2D slices of ``ids`` (``None`` when there are none).

    ``windows``: the same cohort prepared with other 2D windows (e.g. placed without the ground
    truth): pixels and masks come from there, each subject's vendor and group from ``prepared``,
    the run's cohort, so both describe the subject the same way."""
    if not ids:
        return None
    if windows is not None:
        have = set(windows.ids)
        missing = [i for i in ids if i not in have]
        if missing:
            raise UserError(f"utility: subjects {missing[:3]} are missing from the re-windowed cohort")
    s = SliceSet.from_prepared(prepared if windows is None else windows, ids, frames=frames)
    if windows is not None:
        meta = {i: (prepared[i].vendor, prepared[i].group) for i in ids}
        s.vendor = np.array([meta[i][0] for i in s.subject_ids], dtype=str)
        s.group = np.array([meta[i][1] for i in s.subject_ids], dtype=str)
    keep = np.flatnonzero(s.labelled)
    return s.subset(keep) if len(keep) else None


def cap_per_vendor(slices: SliceSet, cap: int, *, seed: int) -> SliceSet:
    """At most ``cap`` evaluation slices per vendor (``audit.max_images``), drawn with the run seed."""
    keep = []
    for v in np.unique(slices.vendor):
        idx = np.flatnonzero(slices.vendor == v)
        if len(idx) > cap:
            idx = np.sort(np.random.default_rng([seed, 17]).choice(idx, cap, replace=False))
        keep.append(idx)
    return slices.subset(np.sort(np.concatenate(keep)))
