"""How the reports show a figure: results-entry tests, number formatting, row labels, glossary
anchors and inline PNG data URIs (shared by the run report and the comparison)."""

from __future__ import annotations

import base64
import math
from typing import Any, Mapping

from reports.glossary import GLOSSARY

_GLOSS_ALIASES = {
    "tpr_at_fpr_1%": "tpr_at_fpr", "tpr_at_fpr_0.1%": "tpr_at_fpr", "tpr_at_lowest_fpr": "tpr_at_fpr",
    "hd95_mm": "hd95", "holdout_copy_rate": "copy_rate",
    "nn_distance_to_train_median": "nn_distance", "holdout_nn_distance_to_train_median": "nn_distance",
    "epsilon_lb_image_level": "epsilon_lb", "violation": "epsilon_lb",
    "bland_altman_bias": "bland_altman", "loa_low": "bland_altman", "loa_high": "bland_altman",
    "best_black_box_auc": "auc", "best_white_box_auc": "auc", "fid_ratio_to_floor": "fid_ratio",
    "accounting": "dp_accounting", "n_members": "setup", "n_nonmembers": "setup",
}


def gloss_for(key: str) -> str:
    """The glossary anchor for a (dotted) results key: its last part, an alias, else the generic note."""
    parts = key.split(".")
    for part in reversed(parts):
        if part in GLOSSARY:
            return part
        if part in _GLOSS_ALIASES:
            return _GLOSS_ALIASES[part]
        if part.startswith("tpr_at_fpr"):
            return "tpr_at_fpr"
    if any(p.startswith("strength_") for p in parts):
        return "sdedit"
    return "metric_entry"


def is_entry(node: Any) -> bool:
    """A results entry (metric or unavailable), not a group of them."""
    return isinstance(node, Mapping) and ("value" in node or "status" in node)


def is_metric(node: Any) -> bool:
    """A results entry with a numeric value."""
    return isinstance(node, Mapping) and "value" in node and isinstance(node.get("value"), (int, float))


def num(v: float) -> str:
    """A number with 3 significant digits (thousands separated, tiny values in exponent form)."""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e4:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3g}"


def _scaled(v: float, unit: str | None) -> float:
    return v * 100.0 if unit == "fraction" else v


def unit_suffix(unit: str | None) -> str:
    """The unit as shown after a value ("" for counts and dimensionless figures, "%" for fractions)."""
    if unit in (None, "", "1", "images", "subjects"):
        return ""
    if unit == "fraction":
        return "%"
    return str(unit)


def fmt_value(v: float | None, unit: str | None = None) -> str:
    """A value for display: 3 significant digits, fractions as percent, counts as integers."""
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    if unit in ("images", "subjects") and float(v).is_integer():
        return str(int(v))
    return num(_scaled(float(v), unit))


def data_uri(png: bytes) -> str:
    """A PNG as an inline ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def label(key: str) -> str:
    """The row label of a results key."""
    return LABELS.get(key, key.replace("_", " "))


LABELS = {
    "best_black_box_auc": "best black-box AUC", "best_white_box_auc": "best white-box AUC",
    "claimed_epsilon": "claimed \u03b5", "epsilon_lb": "empirical \u03b5 lower bound (subject level)",
    "epsilon_lb_image_level": "empirical \u03b5 lower bound (image level)", "violation": "violation (lower bound > claimed \u03b5)",
    "nonmember_images": "non-member images", "nonmember_subjects": "non-member subjects",
    "dcr_ratio": "DCR ratio", "nn_distance_to_train_median": "median NN distance to train (synthetic)",
    "holdout_nn_distance_to_train_median": "median NN distance to train (holdout)",
    "pixel_correlation": "pixel correlation", "pca": "PCA embedding",
    "subject_max": "subject (max)", "subject_mean": "subject (mean)",
}
