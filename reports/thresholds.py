"""Verdict-tile thresholds: which sign-off policy criterion colours each tile figure, and the
good / borderline / concern level of a figure against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from reports.policy import Policy, load_policy
from reports.run_inputs import read_json

#: verdict-tile figure -> the sign-off policy criterion whose thresholds colour it
TILE_CRITERIA: dict[str, str] = {
    "privacy_auc": "mia_auc",
    "fidelity_fid_ratio": "fid_vs_real_floor",
    "anatomy_plausible": "plausible_rate",
    "anatomy_dice_ratio": "judge_dice_vs_ceiling",
}

LEVEL_WORDS = {"good": "good", "warn": "borderline", "bad": "concern", "na": "not available"}
LEVEL_ORDER = {"good": 0, "warn": 1, "bad": 2}


def tile_thresholds(policy: Policy) -> dict[str, dict[str, Any]]:
    """``{tile figure: {"pass", "warn", "better", "criterion"}}`` from ``policy``'s criteria; a
    figure whose criterion the policy does not have is left out (its tile stays grey)."""
    by_id = {c.id: c for c in policy.criteria}
    out: dict[str, dict[str, Any]] = {}
    for key, cid in TILE_CRITERIA.items():
        c = by_id.get(cid)
        if c is not None and c.op in ("<=", "<", ">=", ">"):
            out[key] = {"pass": c.threshold, "warn": c.warn_threshold, "better": "lower" if c.op in ("<=", "<") else "higher",
                        "criterion": cid}
    return out


def tile_level(value: float | None, th: Mapping[str, Any] | None) -> str:
    """``good`` / ``warn`` / ``bad`` of ``value`` against one tile threshold; ``na`` without either."""
    if value is None or th is None:
        return "na"
    lower = th["better"] == "lower"
    if (value <= th["pass"]) if lower else (value >= th["pass"]):
        return "good"
    warn = th.get("warn")
    if warn is not None and ((value <= warn) if lower else (value >= warn)):
        return "warn"
    return "bad"


def run_policy(run_dir: Path) -> Policy:
    """The policy of the run's ``signoff.json`` when it still loads, else the shipped default."""
    try:
        recorded = (read_json(run_dir / "signoff.json").get("policy") or {}).get("path")
        return load_policy(recorded) if recorded else load_policy()
    except Exception:  # noqa: BLE001 - no sign-off yet, or its policy file moved: the default
        return load_policy()
