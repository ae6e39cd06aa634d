"""``audit.pipeline.utility_external``: the external evaluation cohort (``--utility-test-data``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from audit.core.errors import UserError
from audit.core.logs import _state as log_state
from audit.pipeline.utility_external import (SUBJECT_PREFIX, VENDOR_PREFIX, check_external, concat_slices,
                                             external_slices, load_external)
from cohorts.phantom import write_dataset


@pytest.fixture(autouse=True)
def _quiet():
    old = log_state["quiet"]
    log_state["quiet"] = True
    yield
    log_state["quiet"] = old


def _cfg(folder, spacing=3.0, size=64):
    return SimpleNamespace(data=SimpleNamespace(target_spacing=spacing, size=size),
                           audit=SimpleNamespace(utility_test_data=str(folder)))


@pytest.fixture(scope="module")
def mnms(tmp_path_factory):
    """A small phantom in the M&Ms layout (M&Ms label order on disk: converted by the loader)."""
    return write_dataset(tmp_path_factory.mktemp("mnms"), n_subjects=4, seed=7, layout="mnms", vendors=("A", "B"),
                         progress=False)


@pytest.fixture(scope="module")
def run_cohort():
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig

    root = source.resolve("phantom", phantom_subjects=10, phantom_seed=0)
    return load_prepared(root, PreprocessConfig(target_spacing=3.0, size=64), progress=False)


def test_external_slices_are_prefixed_labelled_and_on_the_run_grid(mnms, run_cohort):
    info = check_external(_cfg(mnms), run_cohort, "motion")
    assert info["layout"] == "mnms" and set(info["labelled_subjects"]) == {"A", "B"} and info["data_hash"]
    ext, evaluate = external_slices(load_external(_cfg(mnms), "motion"), "ed_es")
    assert set(evaluate) == {VENDOR_PREFIX + "A", VENDOR_PREFIX + "B"}
    assert sum(len(v) for v in evaluate.values()) == 4
    assert all(i.startswith(SUBJECT_PREFIX) for i in ext.subject_ids) and ext.labelled.all()
    assert set(np.unique(ext.masks)) <= {0, 1, 2, 3} and ext.images.dtype == np.float32
    # M&Ms files store LV as 1 and RV as 3: after the loader the LV (ACDC 3) is the largest blood pool
    assert (ext.masks == 3).sum() > 0 and (ext.masks == 1).sum() > 0
    from generators.data import SliceSet

    own = SliceSet.from_prepared(run_cohort, run_cohort.ids[:2])
    both = concat_slices(own, ext)
    assert len(both) == len(own) + len(ext) and both.shape == own.shape
    assert list(both.vendor[len(own):]) == list(ext.vendor)
    assert concat_slices(None, ext) is ext and concat_slices(own, None) is own


def test_a_different_grid_is_refused(mnms, run_cohort):
    from generators.data import SliceSet

    ext, _ = external_slices(load_external(_cfg(mnms, spacing=2.0, size=80), "motion"), "ed_es")
    with pytest.raises(UserError, match="not on the run's grid"):
        concat_slices(SliceSet.from_prepared(run_cohort, run_cohort.ids[:1]), ext)


def test_bad_external_folders_are_one_line_errors_naming_the_folder(mnms, run_cohort, tmp_path):
    cases = []
    with pytest.raises(UserError) as e:  # missing
        check_external(_cfg(tmp_path / "nope"), run_cohort, "motion")
    cases.append((e, "no such directory"))
    with pytest.raises(UserError) as e:  # the run's own cohort
        check_external(_cfg(run_cohort.root), run_cohort, "mask")
    cases.append((e, "the run's own cohort"))
    nolabels = write_dataset(tmp_path / "nolabels", n_subjects=2, seed=3, layout="acdc", progress=False)
    for gt in nolabels.rglob("*_gt.nii.gz"):
        gt.unlink()
    with pytest.raises(UserError) as e:  # no labelled frames
        check_external(_cfg(nolabels), run_cohort, "motion")
    cases.append((e, "has a labelled frame"))
    for err, needle in cases:
        msg = str(err.value)
        assert needle in msg and "\n" not in msg and "--utility-test-data" in msg

# the whole stage with an external cohort: tests/audit/utility/test_utility.py::test_run_utility_end_to_end
