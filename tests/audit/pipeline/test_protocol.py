"""``data.protocol``: all vendors (standard splits) or source-only (the leave-one-vendor-out splits
are the run's, so the generator never trains on the held-out vendor), and ``auto``, the default:
source-only wherever the run has unseen-vendor rows -- issue 24 requirement 2."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from audit.core.errors import UserError
from audit.pipeline.config import RunConfig
from audit.pipeline.stages import _run_splits, resolve_protocol
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
    s, protocol = _run_splits(cohort, _d("source_only"))
    assert protocol == "source_only"
    held = s.heldout_vendor
    assert s.kind == "lovo" and held == cohort.vendors[-1]
    vendor = {x.subject_id: x.vendor for x in cohort}
    for name in ("train", "reference", "holdout", "test"):
        assert all(vendor[i] != held for i in s[name]), name
    assert s[UNSEEN] and all(vendor[i] == held for i in s[UNSEEN])
    standard, protocol = _run_splits(cohort, _d("all_vendors"))
    assert protocol == "all_vendors"
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


def test_auto_is_the_default_and_is_source_only_wherever_the_run_has_unseen_vendor_rows(cohort, tmp_path):
    assert RunConfig().data.protocol == "auto"
    assert len(cohort.vendors) >= 2
    splits, protocol = _run_splits(cohort, _d("auto"))  # the utility audit on: unseen-vendor rows
    assert protocol == "source_only" and splits.kind == "lovo" and splits.heldout_vendor == cohort.vendors[-1]
    assert splits.assignments == _run_splits(cohort, _d("source_only"))[0].assignments
    splits, protocol = _run_splits(cohort, _d("auto"), utility=False)  # no unseen-vendor rows: keep every subject
    assert protocol == "all_vendors" and splits.kind == "standard"
    path = save_splits(make_splits(cohort, seed=0), tmp_path / "splits.json")  # a split file decides by its kind
    assert _run_splits(cohort, _d("auto", split_file=str(path)))[1] == "all_vendors"


@pytest.mark.parametrize(
    "protocol, vendors, utility, kind, expected",
    [
        ("auto", 1, True, None, "all_vendors"),  # one vendor: nothing to hold out
        ("auto", 2, True, None, "source_only"),
        ("auto", 4, False, None, "all_vendors"),
        ("auto", 4, True, "standard", "all_vendors"),
        ("auto", 4, False, "lovo", "source_only"),
        ("all_vendors", 4, True, None, "all_vendors"),  # explicit values pass through
        ("source_only", 4, False, None, "source_only"),
    ],
)
def test_resolve_protocol(protocol, vendors, utility, kind, expected):
    assert resolve_protocol(protocol, vendors, utility, kind) == expected
