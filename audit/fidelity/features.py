"""Feature-set inputs of the distribution metrics: validated ``(N, d)`` embedding arrays, matching
dimensions, the name of the feature space, and subject ids as indices."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.core.errors import UserError


def as_features(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise UserError(f"{name}: features must be a 2-D array (N, d), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise UserError(f"{name}: features must be real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise UserError(f"{name}: {int((~finite).sum())} of {len(arr)} feature vectors contain NaN or Inf")
    if arr.shape[1] == 0:
        raise UserError(f"{name}: features have dimension 0")
    return arr


def check_same_dim(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise UserError(f"feature dimension mismatch: {na} has d={a.shape[1]}, {nb} has d={b.shape[1]}")


def space_name(feature_label: str) -> str:
    label = " ".join(str(feature_label).split())
    if not label:
        raise UserError("feature_label must name the feature space (e.g. 'judge')")
    return label if label.lower().endswith("features") else f"{label} features"


def subject_index(clusters: Any, n: int, name: str) -> tuple[np.ndarray, int]:
    arr = np.asarray(clusters)
    if arr.ndim != 1 or len(arr) != n:
        raise UserError(f"{name}: need one subject id per image ({n}), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise UserError(f"{name}: subject ids contain NaN or Inf")
    try:
        _, inverse = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise UserError(f"{name}: subject ids must be all strings or all numbers ({exc})") from None
    inverse = inverse.ravel().astype(np.int64)
    return inverse, int(inverse.max()) + 1
