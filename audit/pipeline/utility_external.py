"""The utility audit's external evaluation cohort (``--utility-test-data DIR``).

A second dataset -- another download in the ACDC or M&Ms layout, e.g. M&Ms when the run's
cohort is ACDC -- on which every utility net is scored *as well*: the cross-dataset domain gap
(other hospitals, scanners, protocols and annotators), the question Wong et al. (arXiv
2508.06327) ask with unseen domains. Its subjects never train anything: no generator, no
autoencoder, no segmentation net, no validation; its splits are irrelevant (every annotated
subject is evaluated).

Each external vendor becomes an evaluation "vendor" of the utility section under the key
``external@<vendor>`` (``@`` is allowed in results keys; the run cohort's vendors keep their
names, so the two can never mix even when both datasets call a vendor "A"), its subjects
``external:<subject id>``. Every per-vendor figure -- absolute Dice / HD95, the paired
differences to ``real`` and to ``real+augmentation`` -- is computed for them as for the run's
own vendors, so the sign-off's per-vendor utility criteria read them too.

The external cohort is prepared on the run's grid (``data.target_spacing``, ``data.size``) with
the evaluation window of ``audit.utility_eval_crop`` (label-free by default), through the cohort
cache. It is loaded and checked in the cohort stage, before any training
(:func:`check_external`): a folder without labelled frames, a label file the loaders cannot map
to the ACDC order, or the run's own cohort given again is one line naming the folder, exit 2.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.errors import UserError
from audit.core.logs import progress_disabled
from audit.pipeline.cohort_check import labelled_subjects
from cohorts.cache import load_prepared
from cohorts.preprocess import PreprocessConfig
from generators.data import SliceSet

log = logging.getLogger(__name__)

VENDOR_PREFIX = "external@"
SUBJECT_PREFIX = "external:"

__all__ = ["SUBJECT_PREFIX", "VENDOR_PREFIX", "check_external", "concat_slices", "external_folder", "external_slices",
           "is_external", "load_external"]


def is_external(vendor: str) -> bool:
    """True for an evaluation vendor of the external cohort (``external@<vendor>``)."""
    return str(vendor).startswith(VENDOR_PREFIX)


def external_folder(cfg: Any) -> Path:
    """The ``audit.utility_test_data`` folder; a one-line :class:`UserError` when it is not one."""
    path = Path(cfg.audit.utility_test_data).expanduser()
    if not path.is_dir():
        raise UserError(f"--utility-test-data {path}: {'not a directory' if path.exists() else 'no such directory'} "
                        "(give an ACDC or M&Ms folder with segmentation masks)")
    return path


def load_external(cfg: Any, centre: str):
    """The external cohort (``audit.utility_test_data``) prepared on the run's grid with windows
    placed by ``centre`` (through the cohort cache)."""
    d = cfg.data
    root = external_folder(cfg)
    try:
        return load_prepared(root, PreprocessConfig(target_spacing=d.target_spacing, size=d.size, centre=centre),
                             progress=not progress_disabled())
    except UserError as exc:  # the loaders name the file; say which option it came from
        raise UserError(f"--utility-test-data {root}: {exc}") from None


def check_external(cfg: Any, run_cohort: Any, centre: str) -> dict[str, Any]:
    """Load the external cohort and check it can be evaluated on; raise a one-line
    :class:`UserError` naming the folder otherwise. Returns what ``env.json`` records."""
    ext = load_external(cfg, centre)
    root = cfg.audit.utility_test_data
    if ext.data_hash == run_cohort.data_hash:
        raise UserError(f"--utility-test-data {root}: this is the run's own cohort (same data hash); an external "
                        "evaluation needs another dataset (its subjects would otherwise be in training)")
    labelled = labelled_subjects(ext, list(ext.ids))
    if not labelled:
        raise UserError(f"--utility-test-data {root}: none of its {len(ext)} subjects has a labelled frame; the "
                        "external evaluation scores segmentations against its masks (ACDC: *_gt.nii.gz)")
    per_vendor = {str(v): sum(1 for i in labelled if ext[i].vendor == v) for v in ext.vendors}
    log.info("external utility evaluation cohort %s: %d subjects with labels %s", root, len(labelled), per_vendor)
    return {"source": str(root), "data_hash": ext.data_hash, "layout": ext.layout,
            "labelled_subjects": {k: n for k, n in per_vendor.items() if n}}


def external_slices(ext: Any, frames: str) -> tuple[SliceSet | None, dict[str, list[str]]]:
    """The annotated slices (``frames``) of every labelled external subject, vendors and subject
    ids prefixed (see the module docstring), and ``{external vendor: subject ids}``."""
    ids = labelled_subjects(ext, list(ext.ids))
    if not ids:
        return None, {}
    s = SliceSet.from_prepared(ext, ids, frames=frames)
    keep = np.flatnonzero(s.labelled)
    if not len(keep):
        return None, {}
    s = s.subset(keep)
    s.subject_ids = np.array([SUBJECT_PREFIX + i for i in s.subject_ids], dtype=str)
    s.vendor = np.array([VENDOR_PREFIX + v for v in s.vendor], dtype=str)
    evaluate: dict[str, list[str]] = {}
    for v, i in zip(s.vendor, s.subject_ids):
        if i not in evaluate.setdefault(str(v), []):
            evaluate[str(v)].append(str(i))
    return s, {v: sorted(ids_) for v, ids_ in sorted(evaluate.items())}


def concat_slices(a: SliceSet | None, b: SliceSet | None) -> SliceSet | None:
    """``a`` then ``b`` as one :class:`SliceSet` (same window size and pixel spacing)."""
    if a is None or b is None:
        return a if b is None else b
    if a.shape != b.shape or not np.allclose(a.spacing, b.spacing):
        raise UserError(f"utility: the external slices ({b.shape}, {b.spacing.tolist()} mm) are not on the run's grid "
                        f"({a.shape}, {a.spacing.tolist()} mm)")
    return SliceSet.concat([a, b])
