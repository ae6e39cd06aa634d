"""The columns of the comparison table: where each headline figure of a run comes from
(results.json or state.json), which way is better, and how a ``"*"`` path is reduced to one figure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from audit.core.results import unavailable
from reports.comparison.runs import RunData
from reports.formatting import is_metric
from reports.policy import format_path
from reports.signoff import _resolve

CHANCE_AUC = 0.5


@dataclass(frozen=True)
class Column:
    """One column of the comparison table: where its figure comes from and which way is better."""

    id: str
    label: str
    group: str
    better: str | None  # "lower" | "higher" | None (no mark)
    source: str  # for the column notes
    extract: Callable[[RunData], Mapping[str, Any]]
    gloss: str | None = None
    chance_floor: float | None = None  # values below count as this when comparing (AUC)

    def key(self, value: float) -> float:
        """Comparison key: smaller = better."""
        if self.chance_floor is not None:
            value = max(value, self.chance_floor)
        return value if self.better == "lower" else -value


def _entry(run: RunData, *path: str) -> dict[str, Any]:
    """The results entry at ``path``: the metric, or an unavailable entry with the reason (also
    when the figure or a section above it is absent from results.json)."""
    (m,) = _resolve(run.doc, tuple(path))
    if m.kind == "metric":
        return dict(m.entry)
    return unavailable(m.reason or f"{format_path(path)} is unavailable")


def _extreme(run: RunData, path: tuple[str, ...], *, take: str, what: str) -> dict[str, Any]:
    """The largest (``take="max"``) or smallest figure over a ``"*"`` path, noting which match it is
    and how many matches were unavailable. Branches recorded as unavailable as a whole (an attack
    the generator cannot support) are skipped."""
    matches = _resolve(run.doc, path, skip_branches=True)
    star = path.index("*")
    metrics = [m for m in matches if m.kind == "metric"]
    missing = [m for m in matches if m.kind in ("unavailable", "absent")]
    if not metrics:
        if missing:
            first = missing[0]
            why = first.reason if first.kind == "absent" else f"{format_path(first.path)}: {first.reason}"
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return unavailable(f"{why}{more}")
        skipped = [m for m in matches if m.kind == "skipped"]
        if skipped:
            return unavailable(f"{format_path(skipped[0].path)}: {skipped[0].reason}")
        return unavailable(f"no figure in results.json matches {format_path(path)}")
    pick = (max if take == "max" else min)(metrics, key=lambda m: float(m.entry["value"]))
    out = dict(pick.entry)
    note = f"{what} '{pick.path[star]}'"
    if missing:
        note += f"; {len(missing)} of {len(metrics) + len(missing)} unavailable"
    out["tag"] = note
    return out


def _tagged(e: dict[str, Any]) -> dict[str, Any]:
    """The privacy summary names the attack behind a best AUC in its notes: show that in the cell."""
    if is_metric(e) and e.get("notes"):
        e["tag"] = str(e["notes"])
    return e


def _fid_ratio(run: RunData) -> dict[str, Any]:
    """FID / real floor from results.json, with a CI (the FID's CI divided by the floor's point
    estimate, as the sign-off does) when the results carry none."""
    e = _entry(run, "fidelity", "judge", "fid_ratio_to_floor")
    fid = _entry(run, "fidelity", "judge", "synthetic_vs_test", "fid")
    floor = _entry(run, "fidelity", "judge", "real_floor", "fid")
    if not is_metric(e):
        if is_metric(fid) and is_metric(floor) and float(floor["value"]) > 0:
            e = {"value": float(fid["value"]) / float(floor["value"]), "unit": "1",
                 "method": "FID(synthetic, test) / FID(holdout, test), computed by audit compare"}
        else:
            return e
    if e.get("ci_low") is None and is_metric(fid) and is_metric(floor) and float(floor["value"]) > 0:
        lo, hi = fid.get("ci_low"), fid.get("ci_high")
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            e["ci_low"], e["ci_high"] = lo / float(floor["value"]), hi / float(floor["value"])
            e["method"] = (str(e.get("method") or "FID / real floor") +
                           "; CI: the FID's CI / the floor's point estimate (floor uncertainty not propagated)")
    return e


def _epsilon_lb(run: RunData) -> dict[str, Any]:
    e = _entry(run, "privacy", "dp_verification", "epsilon_lb")
    claimed = _entry(run, "privacy", "dp_verification", "claimed_epsilon")
    if is_metric(e) and is_metric(claimed) and float(e["value"]) > float(claimed["value"]):
        e["tag"] = "exceeds the claimed \u03b5: the DP claim is violated"
    return e


def _train_time(run: RunData) -> dict[str, Any]:
    if run.state is None:
        return unavailable(f"state.json is {run.state_error}")
    stages = run.state.get("stages")
    fit = stages.get("fit") if isinstance(stages, Mapping) else None
    secs = fit.get("seconds") if isinstance(fit, Mapping) else None
    if not isinstance(secs, (int, float)) or not math.isfinite(secs):
        return unavailable("state.json records no finished fit stage")
    return {"value": float(secs), "unit": "s", "method": "wall-clock seconds of the fit stage (state.json)"}


#: the comparison table's figure columns, in display order
COLUMNS: tuple[Column, ...] = (
    Column("mia_auc_bb", "best black-box MIA AUC", "privacy", "lower", "privacy.summary.best_black_box_auc",
           lambda r: _tagged(_entry(r, "privacy", "summary", "best_black_box_auc")), "auc", CHANCE_AUC),
    Column("mia_auc_wb", "best white-box MIA AUC", "privacy", "lower", "privacy.summary.best_white_box_auc",
           lambda r: _tagged(_entry(r, "privacy", "summary", "best_white_box_auc")), "auc", CHANCE_AUC),
    Column("tpr_1", "TPR @ 1 % FPR (%)", "privacy", "lower", "max over privacy.attacks.*.image[\"tpr_at_fpr_1%\"]",
           lambda r: _extreme(r, ("privacy", "attacks", "*", "image", "tpr_at_fpr_1%"), take="max", what="attack"),
           "tpr_at_fpr"),
    Column("copy_rate", "copy rate (%)", "privacy", "lower", "max over privacy.memorisation.*.copy_rate",
           lambda r: _extreme(r, ("privacy", "memorisation", "*", "copy_rate"), take="max", what="space"), "copy_rate"),
    Column("eps_lb", "empirical \u03b5 lower bound", "privacy", "lower", "privacy.dp_verification.epsilon_lb",
           _epsilon_lb, "epsilon_lb"),
    Column("eps_claimed", "claimed \u03b5", "privacy", None, "privacy.dp_verification.claimed_epsilon",
           lambda r: _entry(r, "privacy", "dp_verification", "claimed_epsilon"), "claimed_epsilon"),
    Column("fid", "FID (judge features)", "fidelity", "lower", "fidelity.judge.synthetic_vs_test.fid",
           lambda r: _entry(r, "fidelity", "judge", "synthetic_vs_test", "fid"), "fid"),
    Column("fid_floor", "FID real floor", "fidelity", None, "fidelity.judge.real_floor.fid",
           lambda r: _entry(r, "fidelity", "judge", "real_floor", "fid"), "real_floor"),
    Column("fid_ratio", "FID / floor", "fidelity", "lower", "fidelity.judge.fid_ratio_to_floor", _fid_ratio, "fid_ratio"),
    Column("precision", "precision", "fidelity", "higher", "fidelity.judge.synthetic_vs_test.precision",
           lambda r: _entry(r, "fidelity", "judge", "synthetic_vs_test", "precision"), "precision"),
    Column("recall", "recall", "fidelity", "higher", "fidelity.judge.synthetic_vs_test.recall",
           lambda r: _entry(r, "fidelity", "judge", "synthetic_vs_test", "recall"), "recall"),
    Column("plausible", "plausible images", "anatomy", "higher", "anatomy.plausibility.synthetic.plausible_rate",
           lambda r: _entry(r, "anatomy", "plausibility", "synthetic", "plausible_rate"), "plausible_rate"),
    Column("dice", "judge Dice (mean)", "anatomy", "higher", "anatomy.judge_agreement.dice.mean",
           lambda r: _entry(r, "anatomy", "judge_agreement", "dice", "mean"), "dice"),
    Column("dice_ceiling", "real ceiling", "anatomy", None, "anatomy.judge_agreement_real_test.dice.mean",
           lambda r: _entry(r, "anatomy", "judge_agreement_real_test", "dice", "mean"), "ceiling"),
    Column("ef_r", "LV EF Pearson r", "anatomy", "higher", "anatomy.clinical.lv_ef_pct.pearson_r",
           lambda r: _entry(r, "anatomy", "clinical", "lv_ef_pct", "pearson_r"), "pearson_r"),
    Column("ef_mae", "LV EF MAE (%)", "anatomy", "lower", "anatomy.clinical.lv_ef_pct.mae",
           lambda r: _entry(r, "anatomy", "clinical", "lv_ef_pct", "mae"), "mae"),
    Column("utility", "utility: worst-vendor \u0394Dice", "utility", "higher",
           "min over utility.vs_real[\"real+synthetic\"].*.dice_diff",
           lambda r: _extreme(r, ("utility", "vs_real", "real+synthetic", "*", "dice_diff"), take="min", what="vendor"),
           "utility"),
    Column("train_s", "train time (s)", "cost", "lower", "state.json stages.fit.seconds", _train_time, "train_time"),
)
#: column id -> column
COLUMN_BY_ID = {c.id: c for c in COLUMNS}
