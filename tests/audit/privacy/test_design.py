"""The privacy audit's subject roles (issue 26): non-members = every subject never trained on whose
masks did not condition the samples; never a train, reference or sample-conditioning subject."""

import numpy as np
import pytest

from audit.privacy.design import membership_design
from cohorts.splits import make_splits


def _assign():
    return {"train": ["t1", "t2", "t3"], "holdout": ["h1", "h2"], "reference": ["r1", "r2"], "test": ["x1", "x2", "x3"]}


def test_nonmembers_are_holdout_plus_test():
    d = membership_design(_assign())
    assert d.nonmembers == ("h1", "h2", "x1", "x2", "x3")
    assert d.members == ("t1", "t2", "t3") and d.reference == ("r1", "r2")
    assert d.nonmember_splits == {"h1": "holdout", "h2": "holdout", "x1": "test", "x2": "test", "x3": "test"}
    assert d.nonmember_split_names == ["holdout", "test"] and d.split_counts() == {"holdout": 2, "test": 3}
    text = d.describe()
    assert text["nonmembers"].startswith("splits holdout (2 subjects), test (3 subjects)")
    assert "split train (3 subjects)" in text["members"] and "split reference (2 subjects)" in text["reference"]


def test_conditioning_split_and_sample_subjects_are_never_nonmembers():
    # samples conditioned on the test split: its subjects are out, holdout stays
    d = membership_design(_assign(), condition_split="test")
    assert d.nonmembers == ("h1", "h2") and set(d.excluded) == {"x1", "x2", "x3"}
    assert "split test conditioned the samples" in d.describe()["nonmembers"]
    # an external sample set naming a holdout subject (and ids that name no patient, e.g. cine stack numbers)
    d = membership_design(_assign(), sample_subject_ids=np.array(["h2", "r1", "0", "1"]),
                          cohort_ids=["t1", "t2", "t3", "h1", "h2", "r1", "r2", "x1", "x2", "x3"])
    assert d.nonmembers == ("h1", "x1", "x2", "x3") and "subject_ids" in d.excluded["h2"]


def test_a_subject_listed_in_train_or_reference_and_another_split_is_not_a_nonmember():
    a = _assign()
    a["test"] = a["test"] + ["t1", "r2"]  # a malformed split file
    d = membership_design(a)
    assert "t1" not in d.nonmembers and "r2" not in d.nonmembers


def _cohort(n: int = 40):
    from cohorts.types import Cohort, Subject

    empty = np.zeros((0, 0, 0, 0), np.float32)
    subjects = [Subject(f"s{k:04d}", "AB"[k % 2], "c", ("NOR", "DCM")[k // 2 % 2], (1, 1, 1), 0, 0, empty, None,
                        np.zeros(0, bool), "") for k in range(n)]
    return Cohort(subjects, "synthetic", "acdc", "h" * 64)


@pytest.mark.parametrize("condition_split", ["reference", "holdout", "test", "train"])
def test_pool_on_real_splits_is_disjoint_from_every_exposed_subject(condition_split):
    cohort = _cohort()
    a = make_splits(cohort, seed=3).assignments
    samples = np.array(a["reference"][:2] + a["test"][:1])  # the sample set names one test subject too
    d = membership_design(a, condition_split=condition_split, sample_subject_ids=samples, cohort_ids=cohort.ids)
    pool = set(d.nonmembers)
    exposed = set(a["train"]) | set(a["reference"]) | set(a[condition_split]) | set(samples.tolist())
    assert pool and not pool & exposed
    assert pool == (set(a["holdout"]) | set(a["test"])) - exposed
    assert (a["test"][1] in pool) == (condition_split != "test")
    assert (a["holdout"][0] in pool) == (condition_split != "holdout")
    assert set(d.members) == set(a["train"]) and set(d.reference) == set(a["reference"])



def test_unseen_vendor_subjects_are_another_population_not_nonmembers():
    from audit.privacy.design import UNSEEN_SPLIT
    from cohorts.splits import UNSEEN

    assert UNSEEN_SPLIT == UNSEEN  # the privacy layer names the split the cohort layer writes
    a = {**_assign(), UNSEEN: ["u1", "u2"]}  # leave-one-vendor-out splits (data.protocol = source_only)
    d = membership_design(a)
    assert d.nonmembers == ("h1", "h2", "x1", "x2", "x3")
    assert set(d.excluded) == {"u1", "u2"} and "another population" in d.excluded["u1"]
    assert "2 subject(s) of those splits excluded" in d.describe()["nonmembers"]
