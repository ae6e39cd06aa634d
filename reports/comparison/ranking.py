"""Ranking the runs of a comparison (:data:`RANKING_RULE`), marking the best value per column, and
the Pareto front of two figures."""

from __future__ import annotations

import math
from typing import Sequence

from reports.comparison.columns import COLUMN_BY_ID, COLUMNS
from reports.comparison.runs import RunData
from reports.signoff import FAIL, INCOMPLETE, RANK, WARN

RANKING_RULE = (
    "Order: the policy verdict (PASS, WARN, INCOMPLETE, FAIL); then the worst verdict among the privacy criteria "
    "(privacy first: of two blocked runs, the one that leaks patients ranks lower than the one that is merely "
    "unrealistic); then fewer criteria contributing FAIL, then INCOMPLETE, then WARN; then lower best black-box MIA "
    "AUC (below 0.5 counts as 0.5); then lower FID / real floor (unavailable figures last); finally the run label.")


def _rank_key(run: RunData) -> tuple:
    counts = run.counts()

    def figure(col: str) -> tuple[int, float]:
        v = run.value(col)
        return (1, 0.0) if v is None else (0, COLUMN_BY_ID[col].key(v))

    return (RANK[run.verdict], RANK[run.privacy_verdict()], counts[FAIL], counts[INCOMPLETE], counts[WARN],
            figure("mia_auc_bb"), figure("fid_ratio"), run.label)


def rank_runs(runs: Sequence[RunData]) -> list[RunData]:
    """Runs in ranking order (:data:`RANKING_RULE`: verdict, privacy verdict, criterion counts, AUC, FID
    ratio, label)."""
    return sorted(runs, key=_rank_key)


def best_marks(runs: Sequence[RunData]) -> dict[str, set[int]]:
    """Column id -> indices (into ``runs``) of the best value; ties all marked. Reference runs do not
    compete unless every run is one."""
    competing = [i for i, r in enumerate(runs) if not r.is_reference] or list(range(len(runs)))
    out: dict[str, set[int]] = {}
    for col in COLUMNS:
        if col.better is None:
            continue
        keyed = [(col.key(v), i) for i in competing if (v := runs[i].value(col.id)) is not None]
        if not keyed:
            continue
        best = min(k for k, _ in keyed)
        out[col.id] = {i for k, i in keyed if math.isclose(k, best, rel_tol=1e-12, abs_tol=1e-15)}
    return out


def pareto_front(points: Sequence[tuple[float, float]], *, x_better: str = "lower",
                 y_better: str = "lower") -> list[int]:
    """Indices of the non-dominated points: no other point is at least as good on both axes and
    strictly better on one. Duplicated points are all on the front."""
    sx = 1.0 if x_better == "lower" else -1.0
    sy = 1.0 if y_better == "lower" else -1.0
    keyed = [(sx * x, sy * y) for x, y in points]
    front = []
    for i, (xi, yi) in enumerate(keyed):
        dominated = any(xj <= xi and yj <= yi and (xj < xi or yj < yi) for j, (xj, yj) in enumerate(keyed) if j != i)
        if not dominated:
            front.append(i)
    return front
