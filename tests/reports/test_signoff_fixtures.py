"""Results documents and run directories for the sign-off tests, built programmatically.

Other test files load this one by path (pytest runs with --import-mode=importlib, so
tests/reports is not on sys.path).

``good_doc()`` satisfies every criterion of the shipped default policy, including the utility
figures at the path the policy expects (the contract the utility audit must fill):
``utility.vs_real.real+synthetic.<vendor>.dice_diff``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.results import metric, new_results, unavailable, write_results

VENDORS = ("A", "B", "C", "D")


def m(value: float, ci: tuple[float, float] | None = None, unit: str = "1", n: int = 200) -> dict[str, Any]:
    return metric(value, unit, method="test figure", ci=ci, n=n)


def tpr(value: float, ci: tuple[float, float] | None, fpr: float, n: int = 200) -> dict[str, Any]:
    """A TPR read at ``fpr`` (the FPR recorded in ``params``, as the privacy audit writes it)."""
    return metric(value, "fraction", method="test figure", ci=ci, n=n, params={"fpr": fpr})


def attack_node(auc: float, auc_ci: tuple[float, float], tpr01: float | None = 0.002,
                lowest: tuple[float, tuple[float, float], float] = (0.05, (0.02, 0.08), 10 / 152)) -> dict[str, Any]:
    image = {
        "auc": m(auc, auc_ci),
        "tpr_at_fpr_1%": tpr(0.012, (0.005, 0.02), 0.01),
        "tpr_at_fpr_0.1%": tpr(tpr01, (0.0, 0.005), 0.001) if tpr01 is not None
        else unavailable("only 16 non-member images: a FPR of 0.001 needs at least 1000"),
        "tpr_at_lowest_fpr": tpr(lowest[0], lowest[1], lowest[2]),
    }
    return {"image": image, "subject_mean": {"auc": m(0.5, (0.3, 0.7), n=20)}}


def good_doc(*, run_id: str = "good-run", generator: str = "ldm") -> dict[str, Any]:
    doc = new_results(run_id=run_id, generator=generator, preset="smoke", created_utc="2026-11-26T00:00:00Z")
    doc["run"]["finished_utc"] = "2026-11-26T00:10:00Z"
    doc["provenance"] = {"config_sha256": "ab" * 32, "data_hash": "cd" * 32, "seed": 0, "git_commit": None}
    doc["privacy"] = {
        "attacks": {
            "domias": attack_node(0.52, (0.47, 0.57)),
            "monte_carlo": attack_node(0.54, (0.49, 0.59)),
            # a white-box attack the generator cannot support: a whole unavailable branch
            "loss_threshold": unavailable("the generator has no score method"),
        },
        "summary": {"best_black_box_auc": m(0.54, (0.49, 0.59)),
                    "best_white_box_auc": unavailable("no white-box attack produced scores")},
        "memorisation": {
            "pixel_correlation": {"copy_rate": m(0.0, (0.0, 0.005), unit="fraction")},
            "pca": {"copy_rate": m(0.002, (0.0, 0.008), unit="fraction")},
        },
        "dp_verification": {
            "epsilon_lb": m(0.0),
            "claimed_epsilon": unavailable("no DP claim was made for this generator (no claimed epsilon)"),
            "violation": unavailable("no DP claim was made for this generator (no claimed epsilon)"),
        },
    }
    doc["anatomy"] = {
        "judge_agreement": {"dice": {"mean": m(0.88, (0.86, 0.90))}},
        "judge_agreement_real_test": {"dice": {"mean": m(0.91, (0.90, 0.92))}},
        "plausibility": {"synthetic": {"plausible_rate": m(0.97, (0.95, 0.99))}},
    }
    doc["fidelity"] = {"judge": {
        "synthetic_vs_test": {"fid": m(8.0, (7.0, 9.0), unit="feature units^2")},
        "real_floor": {"fid": m(5.0, (3.0, 7.0), unit="feature units^2")},
        "fid_ratio_to_floor": m(1.6),
    }}
    doc["utility"] = {"vs_real": {"real+synthetic": {
        v: {"dice_diff": m(0.01, (0.0, 0.02), n=20), "hd95_diff_mm": {"mean": m(-0.3, (-0.9, 0.4), unit="mm", n=20)}}
        for v in VENDORS
    }}}
    doc["dp"] = {"accounting": unavailable("trained without differential privacy")}
    return doc


def without_utility(doc: dict[str, Any]) -> dict[str, Any]:
    """As ``audit run`` writes it today: the utility audit is not built yet."""
    doc = copy.deepcopy(doc)
    doc["utility"] = {"audit": unavailable("the utility audit is not available yet")}
    return doc


def leaky_doc() -> dict[str, Any]:
    doc = good_doc(run_id="leaky", generator="copycat")
    doc["privacy"]["attacks"]["domias"]["image"]["auc"] = m(0.99, (0.97, 1.0))
    doc["privacy"]["memorisation"]["pixel_correlation"]["copy_rate"] = m(0.9, (0.85, 0.95), unit="fraction")
    return doc


def write_run(run_dir: Path, doc: dict[str, Any], *, samples: bool = True) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_results(run_dir / "results.json", doc)
    if samples:
        rng = np.random.default_rng(0)
        np.savez(run_dir / "samples.npz", images=rng.random((4, 8, 8), dtype=np.float32),
                 masks=np.zeros((4, 8, 8), np.uint8), spacing=np.array([1.5, 1.5], np.float32))
    return run_dir


def test_fixture_documents_are_valid_results():
    from audit.core.results import validate_results

    for doc in (good_doc(), without_utility(good_doc()), leaky_doc()):
        validate_results(doc)
