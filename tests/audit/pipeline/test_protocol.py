"""``data.protocol``: all vendors (standard splits) or source-only (the leave-one-vendor-out splits
are the run's, so the generator never trains on the held-out vendor) -- issue 24 requirement 2."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from audit.core.errors import UserError
from audit.pipeline.stages import _run_splits
from cohorts.splits import UNSEEN, make_splits, save_splits


def _d(protocol, split_file=""):
    return SimpleNamespace(protocol=protocol, split_file=split_file, split_seed=0, heldout_vendor="", source="phantom")


@pytest.fixture(scope="module")
def cohort():
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig

    root = source.resolve("phantom", phantom_subjects=10, phantom_seed=0)
    return load_prepared(root, PreprocessConfig(target_spacing=3.0, size=64), progress=False)


def test_source_only_keeps_the_heldout_vendor_out_of_every_training_and_conditioning_split(cohort):
    s = _run_splits(cohort, _d("source_only"))
    held = s.heldout_vendor
    assert s.kind == "lovo" and held == cohort.vendors[-1]
    vendor = {x.subject_id: x.vendor for x in cohort}
    for name in ("train", "reference", "holdout", "test"):
        assert all(vendor[i] != held for i in s[name]), name
    assert s[UNSEEN] and all(vendor[i] == held for i in s[UNSEEN])
    standard = _run_splits(cohort, _d("all_vendors"))
    assert standard.kind == "standard" and UNSEEN not in standard.assignments
    assert any(vendor[i] == held for n in ("train", "holdout", "reference", "test") for i in standard[n])


def test_source_only_refusals_are_one_line(cohort, tmp_path):
    one_vendor = SimpleNamespace(vendors=["A"], root="/data/acdc")
    with pytest.raises(UserError, match="source_only holds one vendor out.*has 1 vendor") as err:
        _run_splits(one_vendor, _d("source_only"))
    assert "/data/acdc" in str(err.value) and "\n" not in str(err.value)
    path = save_splits(make_splits(cohort, seed=0), tmp_path / "splits.json")
    with pytest.raises(UserError, match="needs a leave-one-vendor-out split file"):
        _run_splits(cohort, _d("source_only", split_file=str(path)))
