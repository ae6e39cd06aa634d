"""The run report's inputs: which files of a run directory it reads, and reading them so that a
missing or unreadable file is recorded with its reason, never raised."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from audit.core import tables
from audit.core.errors import UserError
from audit.core.results import load_results
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

#: input file -> (what it feeds in the report, the audit axis that writes it or None)
INPUT_FILES: dict[str, tuple[str, str | None]] = {
    "results.json": ("every figure of the privacy, fidelity, anatomy and utility sections and the verdict card", None),
    "config.json": ("provenance: the resolved configuration", None),
    "env.json": ("provenance: versions, git commit, data hash", None),
    "state.json": ("provenance: stage timings", None),
    "samples.npz": ("the sample grid and the synthetic images closest to the training set", None),
    "judge_samples.npz": ("judge-segmentation outlines in the sample grid", "anatomy"),
    "privacy_curves.json": ("ROC curves, distance histograms, attack descriptions, closest synthetic images", "privacy"),
    "privacy_per_sample.csv": ("per-image membership scores (distance histogram fallback)", "privacy"),
    "anatomy_per_sample.csv": ("per-image judge Dice in the sample grid", "anatomy"),
    "clinical_per_subject.csv": ("per-subject clinical indices behind the Bland-Altman figures", "anatomy"),
}


@dataclass
class RunInputs:
    """Everything read from a run directory; ``errors[name]`` says why a file could not be used."""

    run_dir: Path
    results: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    samples: Any = None
    judge: dict[str, np.ndarray] | None = None
    curves: dict[str, Any] | None = None
    privacy_csv: Any = None
    anatomy_csv: Any = None
    clinical_csv: Any = None
    clinical_pngs: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    present: dict[str, bool] = field(default_factory=dict)


def read_json(path: Path) -> Any:
    """The JSON document at ``path``."""
    return json.loads(path.read_text("utf-8"))


def load_inputs(run_dir: Path) -> RunInputs:
    """Read every input of the report; a missing or unreadable file is recorded, never raised."""

    inp = RunInputs(run_dir=run_dir)

    def attempt(name: str, loader: Callable[[Path], Any]) -> Any:
        path = run_dir / name
        inp.present[name] = path.is_file()
        if not path.is_file():
            inp.errors[name] = "missing"
            return None
        try:
            return loader(path)
        except UserError as exc:
            inp.errors[name] = f"unreadable: {exc}"
        except Exception as exc:  # noqa: BLE001 - a broken file must not break the report
            inp.errors[name] = f"unreadable: {type(exc).__name__}: {exc}"
        log.warning("report: cannot use %s: %s", path, inp.errors[name])
        return None

    def load_samples(path: Path):
        return SampleSet.load(path)

    def load_npz(path: Path):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def load_csv(path: Path):
        return tables.read_csv(path)  # our own run-dir tables: strip the spreadsheet guards again

    inp.results = attempt("results.json", load_results)
    inp.config = attempt("config.json", read_json)
    inp.env = attempt("env.json", read_json)
    inp.state = attempt("state.json", read_json)
    inp.samples = attempt("samples.npz", load_samples)
    inp.judge = attempt("judge_samples.npz", load_npz)
    inp.curves = attempt("privacy_curves.json", read_json)
    inp.privacy_csv = attempt("privacy_per_sample.csv", load_csv)
    inp.anatomy_csv = attempt("anatomy_per_sample.csv", load_csv)
    inp.clinical_csv = attempt("clinical_per_subject.csv", load_csv)
    for name, kind in (("config.json", dict), ("env.json", dict), ("state.json", dict), ("privacy_curves.json", dict)):
        attr = {"config.json": "config", "env.json": "env", "state.json": "state", "privacy_curves.json": "curves"}[name]
        if getattr(inp, attr) is not None and not isinstance(getattr(inp, attr), kind):
            inp.errors[name] = "unreadable: not a JSON object"
            setattr(inp, attr, None)
    fig_dir = run_dir / "figures"
    if fig_dir.is_dir():
        inp.clinical_pngs = sorted(p for p in fig_dir.glob("clinical_*.png") if p.is_file())
    return inp
