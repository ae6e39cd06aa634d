"""Release policies for ``audit signoff``: a versioned TOML file of criteria.

Format (``policy_version = 1``)::

    policy_version = 1
    name = "my release policy"             # required
    description = "..."                    # optional

    [[criterion]]                           # one table per criterion, at least one
    id = "mia_auc"                          # unique, [A-Za-z0-9_.+-]
    title = "Membership inference: best AUC"
    metric = ["privacy", "attacks", "*", "image", "auc"]
    op = "<="                               # <=, <, >=, >
    threshold = 0.60                        # PASS when  value op threshold
    warn_threshold = 0.65                   # optional; lenient side of threshold: WARN band
    reference = [...]                       # optional: compare value / reference instead
    reference_param = "fpr"                 # optional: compare value / the entry's own params.fpr
    vacuous_param = "claim_above_ceiling"   # optional: a PASS of an entry with params.<name> = 1 is WARN
    fallback = [[...], ...]                 # optional: paths read, in order, where metric is unavailable
    applies_if = [...]                      # optional: N/A when that entry is unavailable
    use_ci = true                           # optional (false): CI bound crossing -> WARN
    missing = "incomplete"                  # optional: or "not_applicable" (for unavailable)
    skip_unavailable_branches = false       # optional, only with "*" in metric
    severity = "blocker"                    # optional: or "advisory"
    rationale = "one line: why this threshold"

Metric paths are TOML arrays of keys into ``results.json`` (never dotted strings: keys such as
``tpr_at_fpr_0.1%`` contain dots). The first key is a results section (``privacy``,
``fidelity``, ``anatomy``, ``utility``, ``dp``); ``"*"`` matches every key at one level of
``metric`` (not in ``reference`` or ``applies_if``). Every problem -- unknown key, wrong type,
unknown operator, bad path -- is a :class:`audit.core.errors.UserError` naming the file and the key.

``fallback`` makes a criterion read the strictest figure a run could compute: for each
match of ``metric`` that is unavailable or absent, the fallback paths are tried in order and the
first one that is a figure is judged instead (the sign-off names the path it read and why).
A fallback path must have ``"*"`` exactly where ``metric`` has it; those keys are bound to the
match's (e.g. the same attack). ``reference_param`` scales by a number the figure carries
(``params`` of a results entry, :func:`audit.core.results.metric`): the compared figure is
``value / params[reference_param]`` and thresholds are factors of it -- e.g. TPR / FPR <= 10
reads "TPR at most 10x the FPR it was read at", whichever FPR the run supported. An entry
without that parameter cannot be judged (INCOMPLETE). ``reference`` and ``reference_param``
exclude each other. All three keys are optional.

``vacuous_param`` names a flag the measurement itself records when it could not have failed the
criterion whatever the data (e.g. a one-run canary game whose best possible outcome proves less
than the claimed epsilon: ``params.claim_above_ceiling`` = 1). A PASS of such an entry is
reported as WARN with that reason: no evidence is not evidence of safety.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from audit.core.errors import UserError
from audit.core.results import SECTIONS

POLICY_VERSION = 1
OPS = ("<=", "<", ">=", ">")
MISSING = ("incomplete", "not_applicable")
SEVERITIES = ("blocker", "advisory")
WILDCARD = "*"
# the key pattern of the results schema (audit/schema/results-v1.schema.json, $defs/group)
_KEY_RE = re.compile(r"^[A-Za-z0-9_@.%+-]+$")
_ID_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")

_TOP_KEYS = {"policy_version": "integer", "name": "string", "description": "string", "criterion": "array of tables"}
_REQUIRED_TOP = ("policy_version", "name", "criterion")
_CRITERION_KEYS = {
    "id": "string", "title": "string", "metric": "array of keys", "op": "string", "threshold": "number",
    "warn_threshold": "number", "reference": "array of keys", "reference_param": "string", "vacuous_param": "string",
    "fallback": "array of paths", "applies_if": "array of keys", "use_ci": "boolean",
    "missing": "string", "skip_unavailable_branches": "boolean", "severity": "string", "rationale": "string",
}
_PARAM_RE = re.compile(r"^[A-Za-z0-9_]+$")
_REQUIRED_CRITERION = ("id", "title", "metric", "op", "threshold", "rationale")

__all__ = ["POLICY_VERSION", "OPS", "Criterion", "Policy", "default_policy_path", "load_policy", "parse_policy",
           "format_path"]


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    metric: tuple[str, ...]
    op: str
    threshold: float
    rationale: str
    warn_threshold: float | None = None
    reference: tuple[str, ...] | None = None
    applies_if: tuple[str, ...] | None = None
    use_ci: bool = False
    missing: str = "incomplete"
    skip_unavailable_branches: bool = False
    severity: str = "blocker"
    reference_param: str | None = None
    fallback: tuple[tuple[str, ...], ...] = ()
    vacuous_param: str | None = None

    @property
    def axis(self) -> str:
        return self.metric[0]

    @property
    def upper(self) -> bool:
        """True for "smaller is better" criteria (``<=``, ``<``)."""
        return self.op in ("<=", "<")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "axis": self.axis, "metric": list(self.metric), "op": self.op,
            "threshold": self.threshold, "warn_threshold": self.warn_threshold,
            "reference": None if self.reference is None else list(self.reference),
            "reference_param": self.reference_param, "fallback": [list(p) for p in self.fallback],
            "vacuous_param": self.vacuous_param,
            "applies_if": None if self.applies_if is None else list(self.applies_if),
            "use_ci": self.use_ci, "missing": self.missing,
            "skip_unavailable_branches": self.skip_unavailable_branches, "severity": self.severity,
            "rationale": self.rationale,
        }


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    criteria: tuple[Criterion, ...]
    path: str
    sha256: str
    description: str = ""
    shipped: bool = field(default=False)


def format_path(path: tuple[str, ...] | list[str]) -> str:
    """Human-readable path: keys joined by dots, keys that contain a dot quoted in brackets."""
    out = ""
    for i, key in enumerate(path):
        if "." in key:
            out += f'["{key}"]'
        else:
            out += ("." if i else "") + key
    return out


def default_policy_path() -> Path:
    """The shipped default policy (package data ``reports/policies/default.toml``)."""
    return Path(str(resources.files("reports").joinpath("policies/default.toml")))


#: policies shipped with the package, usable by name (``--policy ci``)
SHIPPED = ("default", "ci")


def shipped_policy_path(name: str) -> Path:
    return Path(str(resources.files("reports").joinpath(f"policies/{name}.toml")))


def load_policy(path: str | Path | None = None) -> Policy:
    """Read, hash and validate a policy file (the shipped default when ``path`` is None; a bare
    shipped name -- ``default`` or ``ci`` -- that is not an existing file selects that policy)."""
    shipped = path is None
    if path is not None and str(path) in SHIPPED and not Path(path).exists():
        shipped, path = True, shipped_policy_path(str(path))
    path = default_policy_path() if path is None else Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"policy file {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"policy file {path}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise UserError(f"policy file {path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, not UTF-8, an int too long, nesting too deep
        raise UserError(f"policy file {path}: not valid TOML: {_short(str(exc) or type(exc).__name__, 200)}") from None
    policy = parse_policy(data, source=str(path), sha256=hashlib.sha256(raw).hexdigest())
    return Policy(policy.name, policy.version, policy.criteria, policy.path, policy.sha256, policy.description, shipped)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    """``repr(value)`` for a message, cut short (a policy value can be a long string, or an
    integer too long for ``repr`` at all)."""
    try:
        return _short(repr(value))
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        return f"<{_tname(value)} too large to print>"


def _number(table: dict[str, Any], key: str, where: str) -> float:
    """A finite threshold: TOML reads ``inf`` and ``nan``, and integers of any size."""
    try:
        value = float(table[key])
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise UserError(f"{where}: key '{key}' must be finite, not {_show(table[key])}")
    return value


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("array of keys", "array of paths"):
        return isinstance(value, list)
    if kind == "array of tables":
        return isinstance(value, list)
    raise AssertionError(kind)  # pragma: no cover


def _tname(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _check_keys(table: dict[str, Any], allowed: dict[str, str], required: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise UserError(f"{where}: unknown key '{key}' (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in table:
            raise UserError(f"{where}: missing required key '{key}'")
    for key, value in table.items():
        if not _type_ok(value, allowed[key]):
            raise UserError(f"{where}: key '{key}' must be {_a(allowed[key])}, not {_a(_tname(value))} ({_show(value)})")


def _path(value: list[Any], where: str, key: str, *, wildcard: bool) -> tuple[str, ...]:
    if not value:
        raise UserError(f"{where}: key '{key}' is an empty path")
    for item in value:
        if not isinstance(item, str):
            raise UserError(f"{where}: key '{key}': path items must be strings, not {_a(_tname(item))} ({_show(item)})")
        if item == WILDCARD:
            if not wildcard:
                raise UserError(f"{where}: key '{key}': wildcard '*' is only allowed in 'metric'")
        elif not _KEY_RE.match(item):
            raise UserError(f"{where}: key '{key}': path item {_show(item)} is not a results key "
                            "(letters, digits and _@.%+- only; use an array of keys, not a dotted string)")
    if value[0] not in SECTIONS:
        raise UserError(f"{where}: key '{key}': a path starts with a results section ({', '.join(SECTIONS)}), "
                        f"not {value[0]!r}")
    if len(value) < 2:
        raise UserError(f"{where}: key '{key}': path {value!r} names a whole section, not an entry")
    return tuple(value)


def _one_line(value: str, where: str, key: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise UserError(f"{where}: key '{key}' is empty")
    return text


def _criterion(table: Any, index: int, source: str) -> Criterion:
    where = f"policy file {source}: criterion[{index}]"
    if not isinstance(table, dict):
        raise UserError(f"{where}: must be a table ([[criterion]]), not {_a(_tname(table))}")
    if isinstance(table.get("id"), str):
        where += f" ({_short(table['id'], 60)})"
    _check_keys(table, _CRITERION_KEYS, _REQUIRED_CRITERION, where)
    cid = table["id"]
    if not _ID_RE.match(cid):
        raise UserError(f"{where}: key 'id' {cid!r} may contain only letters, digits and _.+-")
    metric_path = _path(table["metric"], where, "metric", wildcard=True)
    reference = _path(table["reference"], where, "reference", wildcard=False) if "reference" in table else None
    reference_param = table.get("reference_param")
    if reference_param is not None:
        if not _PARAM_RE.match(reference_param):
            raise UserError(f"{where}: key 'reference_param' {_show(reference_param)} must be a parameter name "
                            "(letters, digits and _), e.g. \"fpr\"")
        if reference is not None:
            raise UserError(f"{where}: keys 'reference' and 'reference_param' exclude each other (one divisor per figure)")
    vacuous_param = table.get("vacuous_param")
    if vacuous_param is not None and not _PARAM_RE.match(vacuous_param):
        raise UserError(f"{where}: key 'vacuous_param' {_show(vacuous_param)} must be a parameter name "
                        "(letters, digits and _), e.g. \"claim_above_ceiling\"")
    fallback = _fallbacks(table["fallback"], metric_path, where) if "fallback" in table else ()
    applies_if = _path(table["applies_if"], where, "applies_if", wildcard=False) if "applies_if" in table else None
    op = table["op"]
    if op not in OPS:
        raise UserError(f"{where}: key 'op' {op!r} is not a comparison (use one of {', '.join(OPS)})")
    threshold = _number(table, "threshold", where)
    warn = table.get("warn_threshold")
    if warn is not None:
        warn = _number(table, "warn_threshold", where)
        if (op in ("<=", "<") and warn < threshold) or (op in (">=", ">") and warn > threshold):
            side = "at least" if op in ("<=", "<") else "at most"
            raise UserError(f"{where}: key 'warn_threshold' ({warn:g}) must be {side} 'threshold' ({threshold:g}) "
                            f"for op '{op}' (it widens the band that is WARN instead of FAIL)")
    missing = table.get("missing", "incomplete")
    if missing not in MISSING:
        raise UserError(f"{where}: key 'missing' {missing!r} must be one of {', '.join(MISSING)}")
    severity = table.get("severity", "blocker")
    if severity not in SEVERITIES:
        raise UserError(f"{where}: key 'severity' {severity!r} must be one of {', '.join(SEVERITIES)}")
    skip = table.get("skip_unavailable_branches", False)
    if skip and WILDCARD not in metric_path:
        raise UserError(f"{where}: key 'skip_unavailable_branches' needs a '*' in 'metric'")
    return Criterion(
        id=cid, title=_one_line(table["title"], where, "title"), metric=metric_path, op=op, threshold=threshold,
        rationale=_one_line(table["rationale"], where, "rationale"), warn_threshold=warn, reference=reference,
        applies_if=applies_if, use_ci=table.get("use_ci", False), missing=missing, skip_unavailable_branches=skip,
        severity=severity, reference_param=reference_param, fallback=fallback, vacuous_param=vacuous_param,
    )


def _fallbacks(value: list[Any], metric_path: tuple[str, ...], where: str) -> tuple[tuple[str, ...], ...]:
    """Validate ``fallback``: a non-empty array of paths, each with ``"*"`` exactly where ``metric`` has it."""
    if not value:
        raise UserError(f"{where}: key 'fallback' is empty (give at least one path, or leave the key out)")
    stars = [i for i, k in enumerate(metric_path) if k == WILDCARD]
    out: list[tuple[str, ...]] = []
    for j, item in enumerate(value):
        if not isinstance(item, list):
            raise UserError(f"{where}: key 'fallback': item {j} must be an array of keys (a path), "
                            f"not {_a(_tname(item))} ({_show(item)})")
        path = _path(item, where, f"fallback[{j}]", wildcard=True)
        if [i for i, k in enumerate(path) if k == WILDCARD] != stars:
            raise UserError(f"{where}: key 'fallback[{j}]': '*' must be at the same positions as in 'metric' "
                            f"({format_path(metric_path)}), so that each match falls back on its own figure")
        if path == metric_path or path in out:
            raise UserError(f"{where}: key 'fallback[{j}]': path {format_path(path)} is already tried")
        out.append(path)
    return tuple(out)


def parse_policy(data: Any, *, source: str = "<policy>", sha256: str = "") -> Policy:
    """Validate a parsed policy document; raise :class:`UserError` naming ``source`` and the key."""
    where = f"policy file {source}"
    if not isinstance(data, dict):
        raise UserError(f"{where}: must be a TOML table")
    _check_keys(data, _TOP_KEYS, _REQUIRED_TOP, where)
    if data["policy_version"] != POLICY_VERSION:
        raise UserError(f"{where}: policy_version {_show(data['policy_version'])} is not supported "
                        f"(this cmr-audit reads policy_version {POLICY_VERSION})")
    name = _one_line(data["name"], where, "name")
    if not data["criterion"]:
        raise UserError(f"{where}: no [[criterion]] tables")
    criteria = tuple(_criterion(t, i, source) for i, t in enumerate(data["criterion"]))
    seen: set[str] = set()
    for c in criteria:
        if c.id in seen:
            raise UserError(f"{where}: criterion id '{c.id}' appears twice")
        seen.add(c.id)
    return Policy(name=name, version=POLICY_VERSION, criteria=criteria, path=source, sha256=sha256,
                  description=" ".join(str(data.get("description", "")).split()))
