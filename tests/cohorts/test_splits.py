"""Splits: disjoint, deterministic, seed-sensitive, stratified, hash-checked; leave-one-vendor-out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.core.errors import UserError
from cohorts.splits import SPLIT_NAMES, UNSEEN, load_splits, make_lovo_splits, make_splits, save_splits
from cohorts.types import Cohort, Subject


def _cohort(n_per: dict[tuple[str, str], int], data_hash: str = "h" * 64) -> Cohort:
    empty = np.zeros((0, 0, 0, 0), np.float32)
    subjects = []
    k = 0
    for (vendor, group), n in sorted(n_per.items()):
        for _ in range(n):
            subjects.append(Subject(f"s{k:04d}", vendor, "c", group, (1, 1, 1), 0, 0, empty, None, np.zeros(0, bool), ""))
            k += 1
    return Cohort(subjects, "synthetic", "acdc", data_hash)


BIG = {(v, g): 10 for v in "ABC" for g in ("NOR", "DCM", "HCM", "MINF", "RV")}


def _all_ids(splits) -> list[str]:
    return [i for ids in splits.assignments.values() for i in ids]


def test_disjoint_and_complete() -> None:
    c = _cohort(BIG)
    s = make_splits(c, seed=3)
    ids = _all_ids(s)
    assert len(ids) == len(set(ids)) == len(c)
    assert set(s.names) == set(SPLIT_NAMES)
    assert [len(s[n]) for n in SPLIT_NAMES] == [60, 30, 30, 30]


def test_deterministic_and_seed_sensitive() -> None:
    c = _cohort(BIG)
    assert make_splits(c, seed=1).assignments == make_splits(c, seed=1).assignments
    assert make_splits(c, seed=1).assignments != make_splits(c, seed=2).assignments


def test_stratified_by_vendor_and_group() -> None:
    c = _cohort(BIG)
    s = make_splits(c, seed=0)
    for name, frac in zip(SPLIT_NAMES, (0.4, 0.2, 0.2, 0.2)):
        strata = Counter((c[i].vendor, c[i].group) for i in s[name])
        for key in BIG:
            assert abs(strata[key] - frac * 10) <= 1, (name, key, strata[key])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 9), min_size=1, max_size=8),
    seed=st.integers(0, 10_000),
    fr=st.lists(st.floats(0.05, 1.0), min_size=4, max_size=4),
)
def test_property_splits(sizes, seed, fr) -> None:
    groups = ["NOR", "DCM", "HCM", "MINF"]
    n_per = {(v, groups[i % 4]): n for i, (v, n) in enumerate(zip("ABCDEFGH", sizes)) if n}
    total = sum(n_per.values())
    fractions = dict(zip(SPLIT_NAMES, np.asarray(fr) / sum(fr)))
    if total < 4:
        if total:
            with pytest.raises(UserError, match="cannot fill"):
                make_splits(_cohort(n_per), fractions, seed)
        return
    c = _cohort(n_per)
    s = make_splits(c, fractions, seed)
    ids = _all_ids(s)
    assert sorted(ids) == sorted(c.ids)  # every subject exactly once
    assert all(s[n] for n in SPLIT_NAMES)  # none empty when possible
    # sizes close to the fractions; each split whose quota is under one subject may force
    # one extra move (to keep every split non-empty)
    forced = sum(fractions[n] * total < 1 for n in SPLIT_NAMES)
    for n in SPLIT_NAMES:
        assert abs(len(s[n]) - fractions[n] * total) <= 1 + forced


def test_bad_fractions() -> None:
    c = _cohort(BIG)
    with pytest.raises(UserError, match="sum to 1"):
        make_splits(c, {"train": 0.5, "holdout": 0.2, "reference": 0.2, "test": 0.2})
    with pytest.raises(UserError, match="unknown split"):
        make_splits(c, {"train": 1.0, "valid": 0.0})
    with pytest.raises(UserError, match=">= 0"):
        make_splits(c, {"train": 1.2, "holdout": -0.2})


def test_zero_fraction_split_stays_empty() -> None:
    s = make_splits(_cohort(BIG), {"train": 0.5, "holdout": 0.5, "reference": 0.0, "test": 0.0})
    assert not s["reference"] and not s["test"] and len(s["train"]) == 75


def test_lovo() -> None:
    c = _cohort(BIG)
    s = make_lovo_splits(c, seed=0)
    assert s.heldout_vendor == "C" and s.kind == "lovo"
    assert sorted(s[UNSEEN]) == sorted(x.subject_id for x in c if x.vendor == "C")
    for n in SPLIT_NAMES:
        assert all(c[i].vendor != "C" for i in s[n]) and s[n]
    ids = _all_ids(s)
    assert len(ids) == len(set(ids)) == len(c)
    assert make_lovo_splits(c, "A", seed=0).heldout_vendor == "A"
    with pytest.raises(UserError, match="not in cohort"):
        make_lovo_splits(c, "Z")
    with pytest.raises(UserError, match="two vendors"):
        make_lovo_splits(_cohort({("A", "NOR"): 10}))


def test_save_load_checks_hash(tmp_path: Path) -> None:
    c = _cohort(BIG)
    s = make_lovo_splits(c, seed=5)
    f = save_splits(s, tmp_path / "splits.json")
    back = load_splits(f, c)
    assert back.assignments == s.assignments and back.seed == 5 and back.heldout_vendor == "C"
    other = _cohort(BIG, data_hash="x" * 64)
    with pytest.raises(UserError, match="splits.json.*data hash"):
        load_splits(f, other)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json"):
        load_splits(tmp_path / "bad.json", c)
    with pytest.raises(UserError, match="not found"):
        load_splits(tmp_path / "missing.json")


def test_splits_on_loaded_cohort(acdc_dir: Path, tmp_path: Path, writers) -> None:
    from cohorts.loaders import load_cohort

    root = writers.write_acdc(tmp_path / "eight", n=8)
    c = load_cohort(root, progress=False)
    s = make_splits(c, seed=0)
    assert all(s[n] for n in SPLIT_NAMES) and s.data_hash == c.data_hash


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "3"])
def test_seeds_outside_the_file_schema_are_refused_when_splits_are_made(seed) -> None:
    """``audit data split --seed -1`` was a numpy ValueError (an internal error); a seed the split
    file schema would refuse on loading is refused when the splits are made."""
    with pytest.raises(UserError, match=r"splits: the seed must be an integer in \[0, 2\*\*32\)"):
        make_splits(_cohort(BIG), seed=seed)
    with pytest.raises(UserError, match=r"splits: the seed must be an integer in \[0, 2\*\*32\)"):
        make_lovo_splits(_cohort(BIG), seed=seed)
    assert make_splits(_cohort(BIG), seed=2**32 - 1).seed == 2**32 - 1
