"""Clinical indices of whole short-axis stacks and their agreement: judge-measured vs requested.

A generator is conditioned on the masks of a held-out subject's whole short-axis stacks (all
slices of the ED frame and of the ES frame); the independent judge network segments the
synthetic slices. Per subject, the clinical indices computed from the judge's masks (the
*measured* values) are compared with those of the conditioning masks (the *requested* values).

Index definitions (ACDC; Bernard et al., "Deep learning techniques for automatic MRI cardiac
multi-structures segmentation and diagnosis: is the problem solved?", IEEE TMI 37(11):2514-2525,
2018): masks are label maps in ACDC order (0 background, 1 RV, 2 MYO, 3 LV); volumes by slice
summation (disc summation, Simpson's rule): voxel count x ``sx * sy * sz`` with ``sz`` the slice
*spacing* (thickness + gap, as in ACDC's NIfTI headers), in mL.

* ``lv_edv_ml``, ``lv_esv_ml``, ``rv_edv_ml``, ``rv_esv_ml``: cavity volume at ED / ES (mL).
* ``lv_ef_pct``, ``rv_ef_pct``: ejection fraction ``100 * (EDV - ESV) / EDV`` (%); NaN -- never
  0 and never an error -- when EDV is 0 (no cavity in the ED stack).
* ``lv_mass_g``: myocardial volume at ED x 1.05 g/mL (myocardial density).

Cine sample sets (:func:`cine_indices_table`): each row is one slice of a generated subject over
T frames, the rows of a subject put in stack order by their ``slice_index``. The LV volume of
every frame is summed over the slices; **ED and ES are the frames of largest and smallest LV
volume** (not assumed from the frame order), and the indices above are those of the ED and ES
stacks. They are compared with the values the generator was asked for (the sample set's ``ef``,
``edv``, ``esv``); the same table can be built from the judge's per-frame segmentation or from the
generator's own masks, and every method string says which.

Agreement (Bland & Altman, "Statistical methods for assessing agreement between two methods of
clinical measurement", Lancet 1986;327(8476):307-310; Bland & Altman, "Measuring agreement in
method comparison studies", Stat Methods Med Res 1999;8(2):135-160), over subjects with a finite
measured *and* requested value, with differences ``d = measured - requested``:

* ``pearson_r``: Pearson correlation, 95 % CI by Fisher's z-transform
  (``tanh(atanh(r) -/+ z_0.975 / sqrt(n - 3))``; the whole range [-1, 1] when n = 3);
  unavailable when either side is constant across subjects.
* ``mae``: mean ``|d|``, percentile bootstrap 95 % CI over subjects.
* ``bland_altman_bias``: mean ``d``, CI ``bias -/+ t_{0.975, n-1} * sd / sqrt(n)``.
* ``loa_low`` / ``loa_high``: 95 % limits of agreement ``bias -/+ 1.96 sd``, CI
  ``LoA -/+ t_{0.975, n-1} * sqrt(3 sd^2 / n)`` (the approximate standard error of a limit,
  Bland & Altman 1986 and 1999, section 2.2).

Fewer than 3 finite pairs make every entry unavailable (with the reason), never 0.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from audit.core.atomic import atomic_write_bytes
from audit.core.errors import UserError
from audit.core.results import metric, unavailable
from audit.core.stats import cluster_bootstrap

__all__ = [
    "MYOCARDIAL_DENSITY_G_PER_ML",
    "INDICES",
    "UNITS",
    "stack_indices",
    "indices_table",
    "agreement",
    "clinical_section",
    "CINE_REQUESTED",
    "CINE_COLUMNS",
    "cine_subject_indices",
    "cine_indices_table",
    "cine_clinical_section",
    "bland_altman_plot",
]

log = logging.getLogger(__name__)

#: Myocardial tissue density used to turn myocardial volume into LV mass (g/mL).
MYOCARDIAL_DENSITY_G_PER_ML = 1.05

RV, MYO, LV = 1, 2, 3

#: Index name -> unit, in report order.
UNITS: dict[str, str] = {
    "lv_edv_ml": "mL",
    "lv_esv_ml": "mL",
    "lv_ef_pct": "%",
    "lv_mass_g": "g",
    "rv_edv_ml": "mL",
    "rv_esv_ml": "mL",
    "rv_ef_pct": "%",
}
INDICES: tuple[str, ...] = tuple(UNITS)

_MIN_PAIRS = 3
_LOA_Z = 1.96


# --------------------------------------------------------------------------- validation

def _check_spacing(spacing: Any, what: str = "spacing") -> tuple[float, float, float]:
    try:
        s = np.asarray(spacing, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be three numbers (sx, sy, sz) in mm, got {spacing!r}") from None
    if s.shape != (3,):
        raise UserError(f"{what} must be three numbers (sx, sy, sz) in mm, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise UserError(f"{what} must be finite and positive (mm), got {tuple(float(v) for v in s)}")
    return float(s[0]), float(s[1]), float(s[2])


def _check_mask(mask: Any, what: str, layout: str = "Z,H,W") -> np.ndarray:
    """A validated label map with the axes of ``layout`` (``(Z,H,W)`` by default) as an integer array."""
    a = np.asarray(mask)
    if a.ndim != layout.count(",") + 1:
        raise UserError(f"{what} must be a ({layout}) label map, got shape {a.shape}")
    if a.size == 0:
        raise UserError(f"{what} is empty (shape {a.shape})")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise UserError(f"{what} must hold integer labels 0..3, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise UserError(f"{what} contains NaN or infinite values; expected integer labels 0..3")
        if not np.all(a == np.round(a)):
            raise UserError(f"{what} contains non-integer values; expected integer labels 0..3")
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > 3:
        bad = np.unique(a[(a < 0) | (a > 3)])[:5]
        raise UserError(f"{what} has labels outside 0..3 (ACDC order: 0 bg, 1 RV, 2 MYO, 3 LV): {bad.tolist()}")
    return a.astype(np.intp, copy=False)


def _ef(edv: float, esv: float) -> float:
    return 100.0 * (edv - esv) / edv if edv > 0 else float("nan")


# --------------------------------------------------------------------------- indices

def stack_indices(ed: np.ndarray, es: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Clinical indices of one subject's ED and ES stacks (``(Z,H,W)`` label maps, ACDC order).

    Volumes by slice summation (voxel count x ``sx*sy*sz`` / 1000, in mL; ``sz`` = slice
    spacing); EF in % (NaN when EDV is 0); LV mass = ED myocardial volume x 1.05 g/mL
    (Bernard et al. 2018). Raises :class:`UserError` on mismatched shapes, labels outside
    0..3, NaN or non-positive spacing.
    """
    sx, sy, sz = _check_spacing(spacing)
    ed_a = _check_mask(ed, "ED mask")
    es_a = _check_mask(es, "ES mask")
    if ed_a.shape != es_a.shape:
        raise UserError(f"ED and ES stacks must have the same (Z,H,W) shape, got {ed_a.shape} and {es_a.shape}")
    voxel_ml = sx * sy * sz / 1000.0
    n_ed = np.bincount(ed_a.ravel(), minlength=4)
    n_es = np.bincount(es_a.ravel(), minlength=4)
    lv_edv, lv_esv = float(n_ed[LV]) * voxel_ml, float(n_es[LV]) * voxel_ml
    rv_edv, rv_esv = float(n_ed[RV]) * voxel_ml, float(n_es[RV]) * voxel_ml
    return {
        "lv_edv_ml": lv_edv,
        "lv_esv_ml": lv_esv,
        "lv_ef_pct": _ef(lv_edv, lv_esv),
        "lv_mass_g": float(n_ed[MYO]) * voxel_ml * MYOCARDIAL_DENSITY_G_PER_ML,
        "rv_edv_ml": rv_edv,
        "rv_esv_ml": rv_esv,
        "rv_ef_pct": _ef(rv_edv, rv_esv),
    }


def _per_subject_spacing(spacing: Any, n: int) -> list[tuple[float, float, float]]:
    try:
        s = np.asarray(spacing, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"spacing must be (sx, sy, sz) or one such triple per subject, got {spacing!r}") from None
    if s.shape == (3,):
        return [_check_spacing(s)] * n
    if s.shape == (n, 3):
        return [_check_spacing(row, f"spacing of subject #{i}") for i, row in enumerate(s)]
    raise UserError(f"spacing must be (sx, sy, sz) or an ({n}, 3) array (one per subject), got shape {s.shape}")


def indices_table(
    subject_ids: Sequence[str],
    ed_pred: Sequence[np.ndarray] | np.ndarray,
    es_pred: Sequence[np.ndarray] | np.ndarray,
    ed_ref: Sequence[np.ndarray] | np.ndarray,
    es_ref: Sequence[np.ndarray] | np.ndarray,
    spacing: tuple[float, float, float] | Sequence[tuple[float, float, float]] | np.ndarray,
) -> pd.DataFrame:
    """One row per subject: ``subject_id`` and, for every index, ``<index>_measured`` (from the
    judge's masks ``*_pred``) and ``<index>_requested`` (from the conditioning masks ``*_ref``).

    The mask arguments are sequences of ``(Z,H,W)`` arrays (Z may differ between subjects) or
    ``(N,Z,H,W)`` arrays. ``spacing`` is one ``(sx, sy, sz)`` for all subjects or one per subject.
    """
    ids = [str(s) for s in subject_ids]
    n = len(ids)
    if n == 0:
        raise UserError("indices_table needs at least one subject")
    if len(set(ids)) != n:
        dup = sorted({s for s in ids if ids.count(s) > 1})[:5]
        raise UserError(f"subject ids must be unique, repeated: {dup}")
    stacks = {"ED judge masks": ed_pred, "ES judge masks": es_pred,
              "ED conditioning masks": ed_ref, "ES conditioning masks": es_ref}
    for what, seq in stacks.items():
        if len(seq) != n:
            raise UserError(f"{what}: {len(seq)} stacks for {n} subject ids")
    spacings = _per_subject_spacing(spacing, n)
    rows = []
    for i, sid in enumerate(ids):
        ep, sp = _check_mask(ed_pred[i], f"subject {sid}: ED judge mask"), _check_mask(es_pred[i], f"subject {sid}: ES judge mask")
        er, sr = _check_mask(ed_ref[i], f"subject {sid}: ED conditioning mask"), _check_mask(es_ref[i], f"subject {sid}: ES conditioning mask")
        if ep.shape != er.shape or sp.shape != sr.shape:
            raise UserError(f"subject {sid}: judge and conditioning masks differ in shape "
                            f"(ED {ep.shape} vs {er.shape}, ES {sp.shape} vs {sr.shape})")
        if ep.shape != sp.shape:
            raise UserError(f"subject {sid}: ED and ES stacks must have the same (Z,H,W) shape, got {ep.shape} and {sp.shape}")
        measured = stack_indices(ep, sp, spacings[i])
        requested = stack_indices(er, sr, spacings[i])
        row: dict[str, Any] = {"subject_id": sid}
        for k in INDICES:
            row[f"{k}_measured"] = measured[k]
            row[f"{k}_requested"] = requested[k]
        rows.append(row)
        log.debug("clinical indices of %s: measured %s, requested %s", sid, measured, requested)
    columns = ["subject_id"] + [f"{k}_{side}" for k in INDICES for side in ("measured", "requested")]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- cine stacks

#: Requested-index fields of a cine sample set (:class:`generators.sampleset.SampleSet`) -> index.
CINE_REQUESTED: dict[str, str] = {"ef": "lv_ef_pct", "edv": "lv_edv_ml", "esv": "lv_esv_ml"}

#: Columns :func:`cine_indices_table` adds after those of :func:`indices_table`.
CINE_COLUMNS = ("n_slices", "n_frames", "ed_frame", "es_frame", "missing_slices", "lv_volume_ml_per_frame")


def cine_subject_indices(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, Any]:
    """Clinical indices of one subject's cine stack: ``(Z,T,H,W)`` label maps (ACDC order), slices
    in stack order, every frame of the cycle.

    The LV cavity volume of each frame is measured by slice summation, ``V(t) = sum_z A_z(t) * sz``
    with ``A_z(t)`` the LV area (pixel count x ``sx * sy``) and ``sz`` the slice spacing (Bernard
    et al. 2018, as :func:`stack_indices`). **ED is the frame of largest and ES the frame of smallest
    LV volume** (the first such frame on ties): the frames are found from the segmentation, not
    taken from the frame order, so a generator whose ED is not frame 0 is still measured at its
    own ED and ES (``ed_frame`` / ``es_frame`` tell). EDV, ESV, EF, LV mass (myocardium at ED) and
    the RV volumes and EF then follow from :func:`stack_indices` on the ED and ES stacks: one ED/ES
    pair per subject for both ventricles, as ACDC defines them once per subject. EF is NaN, never
    0, when EDV is 0.

    Returns the :data:`INDICES` plus ``ed_frame``, ``es_frame`` and ``lv_volume_ml`` (``(T,)``).
    """
    sx, sy, sz = _check_spacing(spacing)
    a = _check_mask(labels, "cine stack", layout="Z,T,H,W")
    if a.shape[1] < 2:
        raise UserError(f"cine stack: ED and ES need at least 2 frames, got {a.shape[1]}")
    lv_ml = (a == LV).sum(axis=(0, 2, 3)).astype(np.float64) * (sx * sy * sz / 1000.0)
    ed, es = int(np.argmax(lv_ml)), int(np.argmin(lv_ml))
    out: dict[str, Any] = stack_indices(a[:, ed], a[:, es], (sx, sy, sz))
    out.update(ed_frame=ed, es_frame=es, lv_volume_ml=lv_ml)
    return out


def _row_values(values: Any, n: int, what: str) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be numbers, one per row") from None
    if v.shape != (n,):
        raise UserError(f"{what} must have one value per row ({n},), got shape {v.shape}")
    return v


def cine_indices_table(
    labels: np.ndarray,
    subject_ids: Sequence[str] | np.ndarray,
    slice_index: Sequence[int] | np.ndarray,
    spacing: tuple[float, float, float] | np.ndarray,
    requested: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per subject of a cine sample set, in the :func:`indices_table` format.

    ``labels`` are per-row label maps ``(N,T,H,W)`` (the judge's segmentation of every frame, or
    the generator's own masks); the rows of a subject share its ``subject_ids`` value and are put
    in stack order by ``slice_index`` (0 = basal-most); ``spacing`` is ``(sx, sy, sz)`` in mm.
    ``requested`` maps an index name (e.g. ``lv_ef_pct``; see :data:`CINE_REQUESTED`) to per-row
    requested values, which must be the same on every row of a subject.

    Columns: ``subject_id``; ``<index>_measured`` (:func:`cine_subject_indices`) and
    ``<index>_requested`` (NaN where not requested) for every index of :data:`INDICES`; then
    :data:`CINE_COLUMNS`: ``n_slices``, ``n_frames``, ``ed_frame`` / ``es_frame`` (the frames of
    largest / smallest LV volume), ``missing_slices`` (positions absent between 0 and the
    subject's largest ``slice_index``) and the LV volume curve (mL per frame, ``;``-separated).
    A subject with missing slices cannot be summed into a volume: its measured indices are NaN
    (never 0; :func:`agreement` leaves it out and counts it). Slices missing beyond the largest
    stored position cannot be detected. Subjects are in order of first appearance.
    """
    sp = _check_spacing(spacing)
    lab, ids, si, req = _check_cine_rows(labels, subject_ids, slice_index, requested)
    rows = []
    _, first = np.unique(ids, return_index=True)
    for sid in ids[np.sort(first)]:
        r = np.flatnonzero(ids == sid)
        r = r[np.argsort(si[r], kind="stable")]
        rows.append(_cine_subject_row(str(sid), lab[r], si[r], {k: v[r] for k, v in req.items()}, sp))
    columns = (["subject_id"] + [f"{k}_{side}" for k in INDICES for side in ("measured", "requested")]
               + list(CINE_COLUMNS))
    table = pd.DataFrame(rows, columns=columns)
    for c in ("ed_frame", "es_frame"):
        table[c] = table[c].astype("Int64")
    return table


def _check_cine_rows(labels: Any, subject_ids: Any, slice_index: Any,
                     requested: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The inputs of :func:`cine_indices_table` as arrays, each checked to have one value per row."""
    lab = np.asarray(labels)
    if lab.ndim != 4 or lab.size == 0:
        raise UserError(f"cine labels must be (N,T,H,W) label maps, got shape {lab.shape}")
    n = lab.shape[0]
    ids = np.asarray(subject_ids).astype(str)
    if ids.shape != (n,):
        raise UserError(f"subject_ids must have one value per row ({n},), got shape {ids.shape}")
    si = np.asarray(slice_index)
    if si.shape != (n,) or si.dtype.kind not in "iu":
        raise UserError(f"slice_index must be integers, one per row ({n},), got shape {si.shape} ({si.dtype})")
    if (si < 0).any():
        raise UserError(f"slice_index must be >= 0 (0 = basal-most slice), found {int(si.min())}")
    req: dict[str, np.ndarray] = {}
    for k, v in (requested or {}).items():
        if k not in UNITS:
            raise UserError(f"requested index {k!r} is not a clinical index; known: {list(INDICES)}")
        req[k] = _row_values(v, n, f"requested {k}")
    return lab, ids, si, req


def _cine_subject_row(sid: str, lab: np.ndarray, z: np.ndarray, req: dict[str, np.ndarray],
                      sp: tuple[float, float, float]) -> dict[str, Any]:
    """One subject's row of :func:`cine_indices_table` from its rows in stack order (``lab``,
    positions ``z``, requested values ``req``)."""
    if len(np.unique(z)) != len(z):
        dup = int(z[np.flatnonzero(np.diff(z) == 0)[0]])
        raise UserError(f"subject {sid}: slice_index {dup} occurs more than once; each slice of a subject is one cine row")
    missing = sorted(set(range(int(z.max()) + 1)) - set(z.tolist()))
    row: dict[str, Any] = {"subject_id": str(sid)}
    for k in INDICES:
        v = req.get(k)
        if v is None:
            row[f"{k}_requested"] = float("nan")
            continue
        if not np.allclose(v, v[0], rtol=1e-6, atol=0.0, equal_nan=True):
            raise UserError(f"subject {sid}: requested {k} differs between its rows ({np.unique(v)[:4].tolist()}); "
                            "a subject has one requested value")
        row[f"{k}_requested"] = float(v[0])
    if missing:
        log.warning("subject %s: slice positions %s are missing from its stack; its volumes are not measured", sid, missing)
        measured: dict[str, Any] = {k: float("nan") for k in INDICES}
        extra: dict[str, Any] = {"ed_frame": pd.NA, "es_frame": pd.NA, "lv_volume_ml_per_frame": ""}
    else:
        measured = cine_subject_indices(lab, sp)
        extra = {"ed_frame": measured["ed_frame"], "es_frame": measured["es_frame"],
                 "lv_volume_ml_per_frame": ";".join(f"{x:.6g}" for x in measured["lv_volume_ml"])}
    for k in INDICES:
        row[f"{k}_measured"] = measured[k]
    row.update(n_slices=len(z), n_frames=int(lab.shape[1]), missing_slices=";".join(map(str, missing)), **extra)
    log.debug("cine clinical indices of %s: %s", sid, {k: row[f"{k}_measured"] for k in INDICES})
    return row


def cine_clinical_section(table: pd.DataFrame, *, measured_by: str, requested_from: str, notes: str | None = None,
                          n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`clinical_section` over the indices a cine set requests (a finite ``<index>_requested``
    for some subject); every other index is an unavailable entry naming the missing request."""
    asked = [k for k in INDICES if f"{k}_requested" in table.columns and np.isfinite(table[f"{k}_requested"].to_numpy(float)).any()]
    section = clinical_section(table, indices=asked, n_boot=n_boot, seed=seed, measured_by=measured_by,
                               requested_from=requested_from, notes=notes) if asked else {}
    field = {v: k for k, v in CINE_REQUESTED.items()}
    out = {}
    for k in INDICES:
        if k in section:
            out[k] = section[k]
        elif k in field:
            out[k] = unavailable(f"{k}: the sample set carries no requested '{field[k]}' to compare the measured value with")
        else:
            out[k] = unavailable(f"{k}: a cine sample set requests only {', '.join(CINE_REQUESTED)} (LV); "
                                 f"the measured {k} is in the per-subject table")
    return out


# --------------------------------------------------------------------------- agreement

def _as_vector(values: Any, what: str) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{what} values must be numbers") from None
    if v.ndim != 1:
        raise UserError(f"{what} values must be one-dimensional (one per subject), got shape {v.shape}")
    return v


def _finite_pairs(measured: Any, requested: Any, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    m = _as_vector(measured, f"{name}: measured")
    q = _as_vector(requested, f"{name}: requested")
    if m.shape != q.shape:
        raise UserError(f"{name}: {len(m)} measured values for {len(q)} requested values")
    ok = np.isfinite(m) & np.isfinite(q)
    return m[ok], q[ok], int((~ok).sum())


def _pearson_fisher(m: np.ndarray, q: np.ndarray) -> tuple[float, float, float]:
    """Pearson r and its two-sided 95 % Fisher-z CI (the whole [-1, 1] when n <= 3)."""
    from scipy.special import ndtri  # lazy: scipy only on this path

    n = len(m)
    dm, dq = m - m.mean(), q - q.mean()
    r = float(np.dot(dm, dq) / math.sqrt(float(np.dot(dm, dm)) * float(np.dot(dq, dq))))
    r = min(1.0, max(-1.0, r))
    if n <= 3:
        return r, -1.0, 1.0
    h = float(ndtri(0.975))
    with np.errstate(divide="ignore"):
        z = float(np.arctanh(r))
    se = 1.0 / math.sqrt(n - 3)
    return r, float(np.tanh(z - h * se)), float(np.tanh(z + h * se))


def agreement(measured: Any, requested: Any, *, unit: str, name: str, n_boot: int = 1000, seed: int = 0,
              measured_by: str = "judge-measured", requested_from: str = "requested (conditioning-mask)",
              notes: str | None = None) -> dict:
    """Agreement of judge-measured with requested values of one index across subjects.

    Returns results entries ``pearson_r``, ``mae``, ``bland_altman_bias``, ``loa_low`` and
    ``loa_high`` (see the module docstring for the methods); ``n`` on each is the number of
    subjects whose measured and requested values are both finite (the others are left out
    and counted in ``notes``). ``measured_by`` and ``requested_from`` name both sides in every
    method string (defaults: the judge against the conditioning masks of whole stacks);
    ``notes`` is added to every entry's notes (e.g. how many subjects were measured).
    """
    from scipy.stats import t as student_t  # lazy: scipy only on this path

    m, q, dropped = _finite_pairs(measured, requested, name)
    n = len(m)
    keys = ("pearson_r", "mae", "bland_altman_bias", "loa_low", "loa_high")
    if n < _MIN_PAIRS:
        reason = (f"{name}: only {n} subject(s) with finite measured and requested values "
                  f"({dropped} left out as non-finite, e.g. EF with EDV = 0 or an incomplete stack); "
                  f"at least {_MIN_PAIRS} are needed")
        log.warning("%s", reason)
        return {k: unavailable(reason) for k in keys}
    left_out = None
    if dropped:
        left_out = f"{dropped} subject(s) left out: non-finite measured or requested value (e.g. EF with EDV = 0)"
        log.info("%s: %s", name, left_out)
    notes = "; ".join(x for x in (notes, left_out) if x) or None

    pair = f"{measured_by} vs {requested_from} {name} over {n} subjects"
    out: dict[str, Any] = {}

    const = [side for side, v in (("measured", m), ("requested", q)) if np.all(v == v[0])]
    if const:
        out["pearson_r"] = unavailable(f"{name}: {' and '.join(const)} values are constant across subjects; Pearson r is undefined")
    else:
        r, lo, hi = _pearson_fisher(m, q)
        out["pearson_r"] = metric(r, "1", method=f"Pearson correlation, {pair}; 95% CI by Fisher z-transform",
                                  ci=(lo, hi), n=n, notes=notes)

    d = m - q
    absd = np.abs(d)
    lo, hi = cluster_bootstrap(absd, None, n_boot=n_boot, seed=seed)
    out["mae"] = metric(float(absd.mean()), unit,
                        method=f"mean absolute error |measured - requested|, {pair}; percentile bootstrap 95% CI over subjects ({n_boot} resamples)",
                        ci=(lo, hi), n=n, notes=notes)

    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    t = float(student_t.ppf(0.975, n - 1))
    half = t * sd / math.sqrt(n)
    out["bland_altman_bias"] = metric(bias, unit,
                                      method=f"Bland-Altman bias, mean of (measured - requested), {pair}; 95% CI bias -/+ t(0.975, n-1) sd/sqrt(n) (Bland & Altman 1986)",
                                      ci=(bias - half, bias + half), n=n, notes=notes)
    half_loa = t * math.sqrt(3.0 * sd * sd / n)
    for key, sign in (("loa_low", -1.0), ("loa_high", 1.0)):
        loa = bias + sign * _LOA_Z * sd
        out[key] = metric(loa, unit,
                          method=(f"Bland-Altman {'lower' if sign < 0 else 'upper'} 95% limit of agreement, bias {'-' if sign < 0 else '+'} 1.96 sd "
                                  f"of (measured - requested), {pair}; 95% CI LoA -/+ t(0.975, n-1) sqrt(3 sd^2 / n) (Bland & Altman 1999)"),
                          ci=(loa - half_loa, loa + half_loa), n=n, notes=notes)
    return out


def clinical_section(table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0,
                     indices: Sequence[str] = INDICES, **labels: str | None) -> dict:
    """``{index: agreement(...)}`` for the clinical ``indices`` (all by default) of an
    :func:`indices_table` or :func:`cine_indices_table` table; ``labels`` (``measured_by``,
    ``requested_from``, ``notes``) go to :func:`agreement`."""
    unknown = [k for k in indices if k not in UNITS]
    if unknown:
        raise UserError(f"unknown clinical indices {unknown}; known: {list(INDICES)}")
    missing = [f"{k}_{side}" for k in indices for side in ("measured", "requested") if f"{k}_{side}" not in table.columns]
    if missing:
        raise UserError(f"clinical indices table lacks columns {missing[:4]}{' ...' if len(missing) > 4 else ''} (build it with indices_table)")
    section = {}
    for k in indices:
        section[k] = agreement(table[f"{k}_measured"].to_numpy(float), table[f"{k}_requested"].to_numpy(float),
                               unit=UNITS[k], name=k, n_boot=n_boot, seed=seed, **labels)
    log.info("clinical index agreement computed for %d indices over %d subjects", len(indices), len(table))
    return section


# --------------------------------------------------------------------------- figure

def bland_altman_plot(measured: Any, requested: Any, path: str | Path, *, name: str, unit: str,
                      measured_by: str = "judge", requested_from: str = "conditioning masks") -> Path:
    """Two panels written atomically as PNG: measured vs requested with the identity line, and
    the Bland-Altman plot (mean vs difference ``measured - requested`` with bias and 95 % LoA).

    Uses :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot state). Non-finite
    pairs are left out; bias and LoA lines are drawn only with at least 3 pairs.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib only when a figure is drawn
    from matplotlib.figure import Figure  # lazy: matplotlib only when a figure is drawn

    m, q, dropped = _finite_pairs(measured, requested, name)
    n = len(m)
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_s, ax_b = fig.subplots(1, 2)

    ax_s.scatter(q, m, s=18, alpha=0.8, color="tab:blue", edgecolors="none")
    if n:
        lo, hi = float(min(m.min(), q.min())), float(max(m.max(), q.max()))
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        ax_s.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", ls="--", lw=1, label="identity")
        ax_s.legend(loc="upper left", fontsize=8)
    ax_s.set_xlabel(f"requested ({requested_from}) [{unit}]")
    ax_s.set_ylabel(f"measured ({measured_by}) [{unit}]")
    ax_s.set_title("measured vs requested")

    mean, diff = (m + q) / 2.0, m - q
    ax_b.scatter(mean, diff, s=18, alpha=0.8, color="tab:blue", edgecolors="none")
    if n >= _MIN_PAIRS:
        bias, sd = float(diff.mean()), float(diff.std(ddof=1))
        ax_b.axhline(bias, color="tab:red", lw=1.2, label=f"bias {bias:.3g} {unit}")
        for sign, label in ((-1, "lower"), (1, "upper")):
            loa = bias + sign * _LOA_Z * sd
            ax_b.axhline(loa, color="tab:red", ls="--", lw=1, label=f"{label} LoA {loa:.3g} {unit}")
        ax_b.legend(loc="best", fontsize=8)
    else:
        ax_b.text(0.5, 0.5, f"only {n} finite pair(s):\nno bias / limits of agreement", transform=ax_b.transAxes,
                  ha="center", va="center", color="0.4")
    ax_b.axhline(0.0, color="0.6", lw=0.8)
    ax_b.set_xlabel(f"mean of measured and requested [{unit}]")
    ax_b.set_ylabel(f"measured - requested [{unit}]")
    ax_b.set_title("Bland-Altman")
    left_out = f", {dropped} left out (non-finite)" if dropped else ""
    fig.suptitle(f"{name}: measured by the {measured_by} vs requested (n = {n}{left_out})")

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    out = atomic_write_bytes(path, buf.getvalue())
    log.debug("wrote Bland-Altman plot of %s to %s", name, out)
    return out
