"""Which real subjects play which role in the privacy audit (members, non-members, attacker data).

Membership inference compares the generator's behaviour on **members** (subjects it was trained
on) with **non-members** (subjects from the same population it never saw). The low-FPR figures
that matter for privacy (TPR at 0.1 % FPR, Carlini et al. 2022) need many non-members: the FPR
grid has steps of ``1 / n_nonmembers``. So every real subject that is a valid non-member
counts as one, not only the ``holdout`` split:

* **members** = the ``train`` split: the only subjects a generator is fitted on
  (:mod:`generators.base`).
* **attacker reference data** = the ``reference`` split: population data the attacker holds
  (density-ratio attacks, the PCA embedding). A subject the attacker holds is neither a member
  nor a non-member test case.
* **non-members** = the subjects of every *other* split (``holdout`` and ``test``), except
  - subjects of ``sample.condition_split`` (their masks conditioned the samples, so the
    synthetic images carry their anatomy: scoring them as non-members would count a
    conditioning echo as evidence against membership, or for it), and
  - any cohort subject named in the sample set's ``subject_ids`` (an external ``--samples``
    set or a cine set says which real subjects conditioned it; the same reasoning), and
  - the ``unseen_vendor_test`` split of leave-one-vendor-out splits (``data.protocol =
    source_only``, ``auto`` -- the default -- on a multi-vendor cohort with the utility audit on, or
    a lovo split file): a vendor the generator never saw is another population,
    so a score gap between members and those subjects would measure the domain shift, not
    membership (and a vendor-conditioned model cannot even be asked about an unknown vendor).

The other audits only *read* the ``test`` split (fidelity's real floor, utility's evaluation),
so also using its subjects as non-members changes nothing there; the roles the privacy audit
needs disjoint (members, non-members, attacker data) are disjoint by construction and checked
again in :func:`audit.privacy.section.validate_inputs`. Images per subject are unchanged: more
non-member subjects simply resolve lower FPRs (``10 / n_nonmembers``, see
:mod:`audit.privacy.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

MEMBER_SPLIT = "train"
UNSEEN_SPLIT = "unseen_vendor_test"
"""The held-out vendor's split in leave-one-vendor-out splits (:data:`cohorts.splits.UNSEEN`)."""
REFERENCE_SPLIT = "reference"


@dataclass(frozen=True)
class MembershipDesign:
    """Subject ids per role; ``nonmember_splits`` maps each non-member to its split."""

    members: tuple[str, ...]
    nonmembers: tuple[str, ...]
    reference: tuple[str, ...]
    nonmember_splits: Mapping[str, str]
    #: subject -> why a subject of a candidate split is not a non-member
    excluded: Mapping[str, str] = field(default_factory=dict)
    condition_split: str = REFERENCE_SPLIT

    @property
    def nonmember_split_names(self) -> list[str]:
        """The splits the non-members come from, in the order of the split assignment."""
        return list(dict.fromkeys(self.nonmember_splits.values()))

    def split_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.nonmembers:
            out[self.nonmember_splits[s]] = out.get(self.nonmember_splits[s], 0) + 1
        return out

    def describe(self) -> dict[str, str]:
        """One line per role, for results notes and the report."""
        counts = self.split_counts()
        non = ", ".join(f"{name} ({counts[name]} subjects)" for name in self.nonmember_split_names) or "none"
        excluded = ""
        if self.excluded:
            reasons = sorted(set(self.excluded.values()))
            excluded = f"; {len(self.excluded)} subject(s) of those splits excluded ({'; '.join(reasons)})"
        return {
            "members": f"split {MEMBER_SPLIT} ({len(self.members)} subjects): the generator's training data",
            "nonmembers": f"splits {non}: never trained on, masks never conditioned the samples{excluded}",
            "reference": f"split {REFERENCE_SPLIT} ({len(self.reference)} subjects): the attacker's population data"
                         + (f"; samples conditioned on split {self.condition_split}"),
        }


def membership_design(assignments: Mapping[str, Iterable[str]], *, condition_split: str = REFERENCE_SPLIT,
                      sample_subject_ids: Iterable[Any] | None = None,
                      cohort_ids: Iterable[str] | None = None) -> MembershipDesign:
    """The privacy audit's subject roles from a split assignment (``Splits.assignments``).

    ``sample_subject_ids``: the sample set's ``subject_ids`` (None when it has none); only ids
    that are cohort subjects (``cohort_ids``, when given) count -- a cine set without ids numbers
    its stacks ``"0"``, ``"1"``, ... which name no patient.
    """
    splits = {name: [str(i) for i in (ids or [])] for name, ids in assignments.items()}
    members = tuple(sorted(set(splits.get(MEMBER_SPLIT, []))))
    reference = tuple(sorted(set(splits.get(REFERENCE_SPLIT, [])) - set(members)))
    conditioning = set(splits.get(condition_split, []))
    named: set[str] = set()
    if sample_subject_ids is not None:
        named = set(np.asarray(list(sample_subject_ids)).astype(str).tolist())
        if cohort_ids is not None:
            named &= {str(i) for i in cohort_ids}
    taken = set(members) | set(reference)
    nonmember_splits: dict[str, str] = {}
    excluded: dict[str, str] = {}
    for name, ids in splits.items():
        if name in (MEMBER_SPLIT, REFERENCE_SPLIT):
            continue
        for sid in ids:
            if sid in taken or sid in nonmember_splits:
                continue  # a subject listed in two splits keeps its first, stricter role
            if name == UNSEEN_SPLIT:
                excluded[sid] = (f"split {UNSEEN_SPLIT}: a vendor the generator never saw is another population, "
                                 "not a non-member of the training population")
            elif sid in conditioning:
                excluded[sid] = f"split {condition_split} conditioned the samples"
            elif sid in named:
                excluded[sid] = "named in the sample set's subject_ids (its masks conditioned samples)"
            else:
                nonmember_splits[sid] = name
    return MembershipDesign(members=members, nonmembers=tuple(sorted(nonmember_splits)), reference=reference,
                            nonmember_splits=nonmember_splits, excluded=excluded, condition_split=condition_split)
