"""The runs of a comparison: one run directory read (results.json, config.json, state.json) into a
:class:`RunData` that later carries its policy verdict and table cells, unique short labels, and
the generator family from the registered entry points."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from audit.core.errors import UserError
from audit.core.results import load_results
from reports.formatting import is_metric
from reports.signoff import FAIL, INCOMPLETE, NA, PASS, RANK, WARN

log = logging.getLogger(__name__)

REFERENCE_FAMILY = "reference"


@dataclass
class RunData:
    """One run directory, read and evaluated."""

    dir: Path
    doc: dict[str, Any]
    config: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    state_error: str = "missing"
    label: str = ""
    family: str = ""
    verdict: str = INCOMPLETE
    criteria: list[dict[str, Any]] = field(default_factory=list)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def run(self) -> Mapping[str, Any]:
        r = self.doc.get("run")
        return r if isinstance(r, Mapping) else {}

    @property
    def generator(self) -> str:
        return str(self.run.get("generator") or (self.config or {}).get("generator") or "?")

    @property
    def preset(self) -> str:
        return str(self.run.get("preset") or (self.config or {}).get("preset") or "?")

    @property
    def status(self) -> str:
        s = (self.state or {}).get("status")
        return str(s) if s is not None else "unknown (no state.json)"

    @property
    def is_reference(self) -> bool:
        return self.family == REFERENCE_FAMILY

    def value(self, column: str) -> float | None:
        e = self.cells.get(column)
        return float(e["value"]) if is_metric(e) and math.isfinite(e["value"]) else None

    def privacy_verdict(self) -> str:
        """The worst contribution among the privacy criteria (N/A when none applies)."""
        contributions = [c["contributes"] for c in self.criteria if c.get("axis") == "privacy"]
        return max(contributions, key=RANK.__getitem__, default=NA)

    def counts(self) -> dict[str, int]:
        """Criteria per contribution to the overall verdict (an advisory FAIL counts as WARN)."""
        out = {v: 0 for v in (FAIL, INCOMPLETE, WARN, PASS, NA)}
        for c in self.criteria:
            out[c["contributes"]] = out.get(c["contributes"], 0) + 1
        return out


def _read_json_object(path: Path) -> tuple[dict[str, Any] | None, str]:
    if not path.is_file():
        return None, "missing"
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({exc})"
    if not isinstance(doc, dict):
        return None, "unreadable (not a JSON object)"
    return doc, ""


def load_run(run_dir: str | Path) -> RunData:
    """Read one run directory; :class:`UserError` with a one-line reason when it is not one."""

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (give run directories written by 'audit run')")
    if not (run_dir / "results.json").is_file():
        if not any((run_dir / n).is_file() for n in ("config.json", "state.json")):
            raise UserError(f"{run_dir}: not a run directory (no results.json, config.json or state.json)")
        raise UserError(f"{run_dir}: results.json is missing (the audits did not finish; "
                        "'audit run --resume --out RUN_DIR' continues the run)")
    doc = load_results(run_dir / "results.json")
    config, _ = _read_json_object(run_dir / "config.json")
    state, state_error = _read_json_object(run_dir / "state.json")
    return RunData(dir=run_dir, doc=doc, config=config, state=state, state_error=state_error or "missing")


def families(names: set[str]) -> dict[str, str]:
    """Generator name -> family from the registered entry points (only the names asked for are
    loaded); unknown or broken plugins give ""."""

    eps = {ep.name: ep for ep in metadata.entry_points(group="cmr_audit.generators") if ep.name in names}
    out = {}
    for name in names:
        try:
            out[name] = str(getattr(eps[name].load(), "family", "")) if name in eps else ""
        except Exception as exc:  # noqa: BLE001 - a broken plugin only loses the family tag
            log.debug("cannot load generator %r for its family: %s", name, exc)
            out[name] = ""
    return out


def labels(dirs: Sequence[Path]) -> list[str]:
    """Short unique labels: the directory name, else parent/name, else name (k)."""
    names = [d.name or str(d) for d in dirs]
    if len(set(names)) == len(names):
        return names
    longer = [f"{d.parent.name}/{d.name}" if d.parent.name else d.name for d in dirs]
    out = []
    for i, lab in enumerate(longer):
        out.append(lab if longer.count(lab) == 1 else f"{lab} ({longer[:i].count(lab) + 1})")
    return out
