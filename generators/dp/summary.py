"""What a DP run claims, in two forms: a plain dict for the checkpoint config, and the
``dp`` section of ``results.json`` (metric entries, see :mod:`audit.core.results`)."""

from __future__ import annotations

import math
from typing import Any

from audit.core.results import metric, unavailable
from generators.dp.accountant import Ledger
from generators.dp.plan import DPPlan

#: statements every DP run of these generators must carry (data-dependent steps outside DP-SGD)
COMMON_NOTES = (
    "conditioning vocabulary (the vendor and pathology-group labels present in the train split) is read from "
    "private data without noise: a leak of which categories occur, not of images",
    "intensity normalisation (percentiles) and the crop centre are computed per subject from that subject's own "
    "volume and mask: no statistic across patients",
    "noise is drawn from torch's seeded PRNG for reproducibility, not a cryptographic RNG (Opacus secure_mode off)",
)


def summarise(plan: DPPlan, ledger: Ledger, *, adjusted: list[str], family: str, notes: list[str]) -> dict[str, Any]:
    """The spent privacy of a finished (or stopped) fit, JSON-ready."""
    eps_rdp = ledger.epsilon("rdp")
    try:
        eps_prv: float | None = ledger.epsilon("prv")
        prv_error = None
    except Exception as exc:  # noqa: BLE001 - PRV can fail numerically for extreme plans; RDP still holds
        eps_prv, prv_error = None, f"{type(exc).__name__}: {exc}"
    planned_steps = {p["name"]: p["steps"] for p in plan.phases}
    spent = {p.name: p.steps for p in ledger.phases}
    return {
        "plan": plan.to_dict(),
        "ledger": ledger.to_dict(),
        "epsilon_rdp": eps_rdp,
        "epsilon_prv": eps_prv,
        "prv_error": prv_error,
        "complete": all(spent.get(k, 0) == v for k, v in planned_steps.items()),
        "mixed_phases": [],  # every phase that touches private data is in the ledger
        "adjusted_options": list(adjusted),
        "notes": list(notes) + list(COMMON_NOTES),
        "family": family,
    }


def results_section(s: dict[str, Any]) -> dict[str, Any]:
    """The ``dp`` section: epsilon (RDP, PRV), delta, noise, clipping, sampling, steps per phase."""

    plan = s["plan"]
    unit = plan["unit"]
    acc = f"Opacus RDPAccountant (Mironov et al. 2019) over all {len(s['ledger']['phases'])} phase(s), one composition"
    out: dict[str, Any] = {
        "epsilon": metric(s["epsilon_rdp"], "1", method=f"{acc}; {unit}-level DP", n=plan["n_units"],
                          notes=f"delta {plan['delta']:.3g}; target {plan['target_epsilon']}" if plan["target_epsilon"] else
                          f"delta {plan['delta']:.3g}; fixed noise multiplier"),
    }
    if s.get("epsilon_prv") is not None and math.isfinite(s["epsilon_prv"]):
        out["epsilon_prv"] = metric(s["epsilon_prv"], "1", method="Opacus PRVAccountant (Gopi et al. 2021), eps_error 0.01")
    else:
        out["epsilon_prv"] = unavailable(f"PRV accountant failed: {s.get('prv_error') or 'no finite value'}")
    out["delta"] = metric(plan["delta"], "1", method=f"delta (must be < 1/N = {1 / plan['n_units']:.3g})")
    out["noise_multiplier"] = metric(plan["noise_multiplier"], "1", method="effective noise multiplier sigma of every "
                                     "phase (noise std / clipping norm, per noisy release combined)")
    out["max_grad_norm"] = metric(plan["max_grad_norm"], "1", method=f"per-{unit} clipping norm C (L2 over all parameters "
                                  f"of a network); per-sample gradients by Opacus GradSampleModule, {plan['mode']} mode")
    out["privacy_units"] = metric(plan["n_units"], f"{unit}s", method=f"privacy unit: one {unit}"
                                  + (f" ({plan['slices_per_unit']} slices per sampled subject per step)" if unit == "subject" else ""))
    phases: dict[str, Any] = {}
    spent = {p["name"]: p for p in s["ledger"]["phases"]}
    for p in plan["phases"]:
        done = spent.get(p["name"], {"steps": 0})["steps"]
        phases[p["name"]] = {
            "sample_rate": metric(p["sample_rate"], "1", method="Poisson sampling rate q (Opacus UniformWithReplacementSampler)"),
            "steps": metric(done, "steps", method=f"steps taken (planned {p['steps']})"),
            "releases": metric(p["releases"], "1", method="noisy gradients released per step (each noised with sigma*sqrt(releases))"),
        }
    out["phases"] = phases
    out["mixed_phases"] = metric(len(s["mixed_phases"]), "phases", method="phases that saw private data without DP",
                                 notes="; ".join(s["mixed_phases"]) or "none: every phase is in the ledger")
    out["data_dependent_steps"] = metric(len(s["notes"]), "notes", method="what the accountant does not cover or changes",
                                         notes=" | ".join(s["notes"] + [f"option changed for DP: {a}" for a in s["adjusted_options"]]))
    out["complete"] = metric(1.0 if s["complete"] else 0.0, "1", method="1 = every planned step was taken")
    return out
