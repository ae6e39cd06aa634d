"""``results.json``: the one machine-readable output of a run (schema ``cmr-audit/results/v1``).

Every figure is either a *metric entry* ``{value, unit, ci_low, ci_high, n, method}`` or an
*unavailable entry* ``{status: "unavailable", reason}`` -- a metric that could not be computed is
never recorded as 0. Sections (``privacy``, ``fidelity``, ``anatomy``, ``utility``, ``dp``) nest
groups of entries freely; ``provenance`` carries the config hash, data hash, seed and timings.

The JSON Schema ships in the package (``audit/schema/results-v1.schema.json``); every results
file is validated against it before it is written and when it is read. The contract in prose:
``docs/results.md``.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError

SCHEMA_VERSION = "cmr-audit/results/v1"
SECTIONS = ("privacy", "fidelity", "anatomy", "utility", "dp")

__all__ = [
    "SCHEMA_VERSION",
    "SECTIONS",
    "metric",
    "unavailable",
    "new_results",
    "schema",
    "validate_results",
    "write_results",
    "load_results",
    "iter_entries",
]


def metric(
    value: float,
    unit: str,
    *,
    method: str,
    ci: tuple[float, float] | None = None,
    n: int | None = None,
    notes: str | None = None,
    params: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A metric entry. ``unit`` is mandatory (use ``"1"`` for dimensionless ratios).

    ``params``: optional finite numbers that define the figure and vary between runs, e.g. the
    FPR at which a TPR is read (``{"fpr": 0.0066}``); a policy criterion can scale its threshold
    by one of them (``reference_param`` in :mod:`reports.policy`).
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"metric value must be finite, got {value} ({method}); record it as unavailable instead")
    if params is not None and not all(math.isfinite(float(v)) for v in params.values()):
        raise ValueError(f"metric params must be finite, got {dict(params)} ({method})")
    entry: dict[str, Any] = {
        "value": value,
        "unit": unit,
        "ci_low": None if ci is None else float(ci[0]),
        "ci_high": None if ci is None else float(ci[1]),
        "n": None if n is None else int(n),
        "method": method,
    }
    if notes:
        entry["notes"] = notes
    if params:
        entry["params"] = {str(k): float(v) for k, v in params.items()}
    return entry


def unavailable(reason: str) -> dict[str, str]:
    """An entry for a figure that could not be computed, with the reason."""
    reason = " ".join(str(reason).split())
    if not reason:
        raise ValueError("an unavailable entry needs a reason")
    return {"status": "unavailable", "reason": reason}


def new_results(*, run_id: str, generator: str, preset: str, created_utc: str) -> dict[str, Any]:
    """An empty results document with all sections present."""
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "run": {"id": run_id, "generator": generator, "preset": preset, "created_utc": created_utc},
        "provenance": {},
    }
    for section in SECTIONS:
        doc[section] = {}
    return doc


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    text = resources.files("audit").joinpath("schema/results-v1.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_results(doc: Mapping[str, Any], *, source: str = "results") -> None:
    """Raise :class:`UserError` naming the first schema violation (with its JSON path)."""
    version = doc.get("schema") if isinstance(doc, Mapping) else None
    if version is not None and version != SCHEMA_VERSION:
        raise UserError(f"{source}: schema version {version!r} is not supported (this cmr-audit reads {SCHEMA_VERSION!r})")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "<top>"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"{source}: invalid at {where}: {err.message}{more}")


def write_results(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Validate, then write atomically. An invalid document never reaches the disk."""
    validate_results(doc, source=str(path))
    return atomic_write_json(path, doc)


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no results file (the run did not finish?)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read results: {exc}") from None
    validate_results(doc, source=str(path))
    return doc


def iter_entries(node: Mapping[str, Any], prefix: str = ""):
    """Yield ``(dotted_key, entry)`` for every metric or unavailable entry below ``node``."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and ("value" in value or "status" in value):
            yield path, value
        elif isinstance(value, Mapping):
            yield from iter_entries(value, path + ".")
