"""``audit signoff``: apply a release policy to a run directory; write ``signoff.json`` + ``signoff.html``.

Verdicts per criterion:

* ``PASS``       the figure satisfies the threshold (and, with ``use_ci``, so does its CI bound);
* ``WARN``       the figure is in the warn band, or passes on the point estimate while the
                 unfavourable CI bound (upper for ``<=``, lower for ``>=``) crosses the threshold;
* ``FAIL``       the figure is beyond the threshold (and beyond the warn band, if any);
* ``INCOMPLETE`` the figure is recorded as unavailable or is absent from ``results.json``: there
                 is no evidence either way, so it is never a PASS;
* ``N/A``        the criterion does not apply to this run (``applies_if`` unavailable, e.g. no
                 DP claim; or ``missing = "not_applicable"``). Neutral in the overall verdict.

With a wildcard (``"*"``) every match must satisfy the criterion: the verdict is that of the
worst match, except that one failing match is a definite FAIL even when other matches are
unavailable (the unknown ones cannot undo it); otherwise an unavailable match makes it INCOMPLETE.
With a ``reference`` the compared figure is ``value / reference`` and its CI is the figure's CI
divided by the reference's point estimate (the reference's own uncertainty is not propagated).
With a ``reference_param`` it is ``value / params[reference_param]`` of the same entry (e.g. a TPR
divided by the FPR it was read at; that FPR is a fixed design value, so the CI is divided too).
An upper limit on a fraction that the scaling lifts to 1 or more (``threshold x param >= 1``, e.g.
10x an FPR of 0.625 in a 16-image smoke audit) cannot fail: such a PASS is reported as WARN. So is
a PASS of an entry whose ``params[vacuous_param]`` is 1: the measurement recorded that no outcome
could have failed the criterion (a one-run canary game whose ceiling is below the claim).
With ``fallback`` paths, a match that is unavailable or absent is replaced by the first fallback
figure that exists (wildcards bound to the match's keys); the record names the path read, the path
it stands in for and why (``fallback_for``, ``fallback_reason``), and so does the reason line.

Overall verdict: the worst criterion by ``FAIL > INCOMPLETE > WARN > PASS`` (N/A is ignored;
when every criterion is N/A the overall verdict is INCOMPLETE). FAIL ranks above INCOMPLETE
because a measured failure is definite and actionable, while INCOMPLETE only says that evidence
is missing; both block a release. An ``advisory`` criterion's FAIL or INCOMPLETE counts as WARN
in the overall verdict. Exit codes: PASS 0, WARN 1, FAIL or INCOMPLETE 2.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from audit import __version__
from audit.core.atomic import atomic_write_json, atomic_write_text
from audit.core.errors import UserError
from audit.core.results import validate_results
from reports.policy import WILDCARD, Criterion, Policy, format_path, load_policy

SIGNOFF_SCHEMA = "cmr-audit/signoff/v1"
PASS, WARN, FAIL, INCOMPLETE, NA = "PASS", "WARN", "FAIL", "INCOMPLETE", "N/A"
# higher = worse; the overall verdict is the worst contribution
RANK = {NA: 0, PASS: 1, WARN: 2, INCOMPLETE: 3, FAIL: 4}
VERDICT_ORDER = (FAIL, INCOMPLETE, WARN, PASS)  # worst first
EXIT_CODES = {PASS: 0, WARN: 1, INCOMPLETE: 2, FAIL: 2}
SIGNOFF_JSON, SIGNOFF_HTML = "signoff.json", "signoff.html"

__all__ = ["PASS", "WARN", "FAIL", "INCOMPLETE", "NA", "RANK", "EXIT_CODES", "SignoffResult", "evaluate_policy",
           "evaluate_criterion", "overall_verdict", "render_html", "sign_off", "sha256_file"]


# --------------------------------------------------------------------------- resolving paths


@dataclass(frozen=True)
class _Match:
    path: tuple[str, ...]
    kind: str  # "metric" | "unavailable" | "absent" | "skipped"
    entry: Mapping[str, Any] | None = None
    reason: str = ""
    #: the metric path this match stands in for (read through ``fallback``), and why
    fallback_for: tuple[str, ...] | None = None
    fallback_reason: str = ""


def _is_entry(node: Any) -> bool:
    return isinstance(node, Mapping) and ("value" in node or "status" in node)


def _context(node: Mapping[str, Any], prefix: tuple[str, ...]) -> str:
    """Why a figure below ``node`` may be absent: the reasons of the unavailable entries under it, when
    ``node`` holds nothing else (e.g. ``utility: {audit: unavailable}``)."""
    if not node or not all(_is_entry(v) and v.get("status") == "unavailable" for v in node.values()):
        return ""
    reasons = [f"{format_path(prefix + (k,))}: {v.get('reason', 'unavailable')}" for k, v in node.items()
               if _is_entry(v) and v.get("status") == "unavailable"]
    return f" ({'; '.join(reasons[:3])})" if reasons else ""


def _resolve(doc: Mapping[str, Any], path: tuple[str, ...], *, skip_branches: bool = False) -> list[_Match]:
    out: list[_Match] = []

    def walk(node: Any, i: int, prefix: tuple[str, ...]) -> None:
        if i == len(path):
            if not _is_entry(node):
                out.append(_Match(prefix, "absent", None, f"{format_path(prefix)} is a group, not a figure"))
            elif node.get("status") == "unavailable":
                out.append(_Match(prefix, "unavailable", node, str(node.get("reason", ""))))
            elif not isinstance(node.get("value"), (int, float)) or not math.isfinite(node["value"]):
                out.append(_Match(prefix, "unavailable", node, f"non-finite value {node.get('value')!r}"))
            else:
                entry = dict(node)
                for k in ("ci_low", "ci_high"):  # a non-finite CI bound is no CI
                    v = entry.get(k)
                    if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v)):
                        entry[k] = None
                out.append(_Match(prefix, "metric", entry))
            return
        if _is_entry(node):  # an entry where the path wants to go deeper
            if node.get("status") == "unavailable":
                kind = "skipped" if skip_branches and WILDCARD in path[:i] else "unavailable"
                out.append(_Match(prefix, kind, node, str(node.get("reason", ""))))
            else:
                out.append(_Match(prefix, "absent", None, f"{format_path(prefix)} is a figure, not a group"))
            return
        if not isinstance(node, Mapping):
            out.append(_Match(prefix, "absent", None, f"{format_path(prefix)} is not a group"))
            return
        key = path[i]
        if key == WILDCARD:
            for k in sorted(node):
                walk(node[k], i + 1, prefix + (k,))
            return
        if key not in node:
            out.append(_Match(prefix + (key,), "absent", None,
                              f"{format_path(prefix + (key,))} is not in results.json{_context(node, prefix)}"))
            return
        walk(node[key], i + 1, prefix + (key,))

    walk(doc, 0, ())
    return out


def _with_fallbacks(doc: Mapping[str, Any], c: Criterion, matches: list[_Match]) -> list[_Match]:
    """Replace each unavailable / absent match by the first fallback figure that exists (in order)."""
    if not c.fallback:
        return matches
    stars = [i for i, k in enumerate(c.metric) if k == WILDCARD]
    out = []
    for m in matches:
        if m.kind not in ("unavailable", "absent") or (stars and len(m.path) <= stars[-1]):
            out.append(m)  # a figure, a skipped branch, or a failure above the wildcard keys
            continue
        tried = []
        for fb in c.fallback:
            path = tuple(m.path[i] if k == WILDCARD else k for i, k in enumerate(fb))
            (f,) = _resolve(doc, path)
            if f.kind == "metric":
                why = f"{format_path(m.path)} is unavailable ({m.reason})" if m.kind == "unavailable" else m.reason
                out.append(_Match(f.path, "metric", f.entry, "", m.path, why))
                break
            tried.append(f"{format_path(f.path)}: {f.reason}")
        else:
            out.append(_Match(m.path, m.kind, m.entry, f"{m.reason}; fallback {'; '.join(tried)}"))
    return out


# --------------------------------------------------------------------------- judging


def _cmp(x: float, op: str, thr: float) -> bool:
    return {"<=": x <= thr, "<": x < thr, ">=": x >= thr, ">": x > thr}[op]


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _judge(c: Criterion, x: float, lo: float | None, hi: float | None, what: str = "") -> tuple[str, str]:
    """Verdict and one-line reason for one compared figure ``x`` (a ratio when ``c.reference``);
    ``what`` prefixes the figure in the reason (e.g. ``"168 / 4.98 = ratio "``)."""
    if _cmp(x, c.op, c.threshold):
        if c.use_ci:
            bound, side = (hi, "upper") if c.upper else (lo, "lower")
            if bound is None:
                return PASS, f"{what}{_f(x)} {c.op} {_f(c.threshold)} (no CI recorded: point estimate only)"
            if not _cmp(bound, c.op, c.threshold):
                return WARN, (f"{what}{_f(x)} {c.op} {_f(c.threshold)} on the point estimate, but the CI {side} "
                              f"bound {_f(bound)} is not")
        return PASS, f"{what}{_f(x)} {c.op} {_f(c.threshold)}"
    if c.warn_threshold is not None and _cmp(x, c.op, c.warn_threshold):
        return WARN, f"{what}{_f(x)} is in the warn band (not {c.op} {_f(c.threshold)}, but {c.op} {_f(c.warn_threshold)})"
    limit = f" nor {c.op} {_f(c.warn_threshold)} (warn limit)" if c.warn_threshold is not None else ""
    return FAIL, f"{what}{_f(x)} is not {c.op} {_f(c.threshold)}{limit}"


def _entry_view(m: _Match) -> dict[str, Any]:
    e = dict(m.entry or {})
    view: dict[str, Any] = {"path": list(m.path), "path_display": format_path(m.path)}
    if m.kind == "metric":
        for k in ("value", "unit", "ci_low", "ci_high", "n", "method", "notes", "params"):
            if k in e:
                view[k] = e[k]
        if m.fallback_for is not None:
            view["fallback_for"] = format_path(m.fallback_for)
            view["fallback_reason"] = m.fallback_reason
    else:
        view["status"] = m.kind
        view["reason"] = m.reason
    return view


def _base(c: Criterion) -> dict[str, Any]:
    return {
        "id": c.id, "title": c.title, "axis": c.axis, "severity": c.severity, "rationale": c.rationale,
        "metric": list(c.metric), "metric_display": format_path(c.metric), "op": c.op, "threshold": c.threshold,
        "fallback": [format_path(p) for p in c.fallback], "reference_param": c.reference_param,
        "warn_threshold": c.warn_threshold, "use_ci": c.use_ci, "missing": c.missing,
        "reference": None, "applies_if": None if c.applies_if is None else format_path(c.applies_if),
        "effective_threshold": c.threshold, "effective_warn_threshold": c.warn_threshold,
        "observed": None, "matches": [], "skipped": [],
    }


def _finish(res: dict[str, Any], verdict: str, reason: str) -> dict[str, Any]:
    res["verdict"] = verdict
    res["reason"] = " ".join(reason.split())
    contributes = verdict
    if res["severity"] == "advisory" and verdict in (FAIL, INCOMPLETE):
        contributes = WARN
    res["contributes"] = contributes
    return res


def _param(entry: Mapping[str, Any] | None, name: str | None) -> float | None:
    """``entry["params"][name]`` when it is a positive finite number, else None."""
    params = (entry or {}).get("params")
    v = params.get(name) if isinstance(params, Mapping) and name is not None else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        return None
    return float(v)


def _missing(c: Criterion, m: _Match) -> str:
    """Verdict for a required single entry that is not a usable metric."""
    if m.kind == "unavailable" and c.missing == "not_applicable":
        return NA
    return INCOMPLETE


def _applies(c: Criterion, doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(verdict, reason)`` when the ``applies_if`` gate settles the criterion (N/A or INCOMPLETE), else None."""
    if c.applies_if is None:
        return None
    (gate,) = _resolve(doc, c.applies_if)
    if gate.kind == "unavailable":
        return NA, f"not applicable: {format_path(gate.path)} is unavailable ({gate.reason})"
    if gate.kind != "metric":
        return INCOMPLETE, f"cannot tell whether the criterion applies: {gate.reason}"
    return None


def _reference_value(c: Criterion, doc: Mapping[str, Any], res: dict[str, Any]) -> tuple[float | None, tuple[str, str] | None]:
    """The reference's point estimate (None without a reference) and, when the reference settles the
    criterion, ``(verdict, reason)``; records the reference and the effective thresholds in ``res``."""
    if c.reference is None:
        return None, None
    (ref,) = _resolve(doc, c.reference)
    res["reference"] = _entry_view(ref)
    if ref.kind != "metric":
        why = f"{format_path(ref.path)} is unavailable ({ref.reason})" if ref.kind == "unavailable" else ref.reason
        return None, (_missing(c, ref), f"reference {why}")
    ref_value = float(ref.entry["value"])
    if ref_value <= 0:
        return None, (INCOMPLETE, f"reference {format_path(ref.path)} = {_f(ref_value)} is not positive: "
                                  "a threshold relative to it is undefined")
    res["effective_threshold"] = c.threshold * ref_value
    if c.warn_threshold is not None:
        res["effective_warn_threshold"] = c.warn_threshold * ref_value
    return ref_value, None


def _without_param(c: Criterion, m: _Match, view: dict[str, Any]) -> tuple[_Match, dict[str, Any]]:
    """A metric match that lacks the positive ``params[reference_param]`` it must be scaled by, as an absent one."""
    view = {k: v for k, v in view.items() if k in ("path", "path_display", "fallback_for", "fallback_reason")}
    m = _Match(m.path, "absent", m.entry,
               f"{format_path(m.path)} has no positive params.{c.reference_param} to scale by (results "
               "written before cmr-audit recorded it: re-run the audit)", m.fallback_for, m.fallback_reason)
    view.update(status="absent", reason=m.reason)
    return m, view


def _judge_metric(c: Criterion, m: _Match, view: dict[str, Any], ref_value: float | None) -> None:
    """Judge one metric match: the compared figure (a ratio when scaled), its verdict and reason, into ``view``."""
    e = m.entry
    x, lo, hi = float(e["value"]), e.get("ci_low"), e.get("ci_high")
    divisor = ref_value if ref_value is not None else _param(e, c.reference_param)
    if divisor is not None:
        x = x / divisor
        lo = None if lo is None else lo / divisor
        hi = None if hi is None else hi / divisor
        view.update(ratio=x, ratio_ci_low=lo, ratio_ci_high=hi)
    what = ""
    if ref_value is not None:
        what = f"{_f(float(e['value']))} / {_f(ref_value)} = ratio "
    elif divisor is not None:
        what = f"{_f(float(e['value']))} / {c.reference_param} {_f(divisor)} = ratio "
    if m.fallback_for is not None:
        what = f"(read instead of {format_path(m.fallback_for)}: {m.fallback_reason}) {what}"
    verdict, reason = _judge(c, x, lo, hi, what)
    if (verdict == PASS and c.reference_param is not None and c.upper and e.get("unit") == "fraction"
            and c.threshold * divisor >= 1):
        verdict, reason = WARN, (f"{reason}, but at {c.reference_param} {_f(divisor)} the limit "
                                 f"{_f(c.threshold)} x {_f(divisor)} >= 1: no fraction can exceed it, so this "
                                 f"figure cannot show a leak (a lower {c.reference_param}, i.e. more data, is "
                                 "needed)")
    if verdict == PASS and c.vacuous_param is not None and (e.get("params") or {}).get(c.vacuous_param) == 1:
        verdict, reason = WARN, (f"{reason}, but the measurement records {c.vacuous_param} = 1: no outcome "
                                 "could have failed this criterion, so the PASS carries no evidence")
    view.update(verdict=verdict, reason=reason, compared=x)


def _unknown_reason(ms: list[_Match]) -> str:
    m = ms[0]
    why = f"{format_path(m.path)} is unavailable: {m.reason}" if m.kind == "unavailable" else m.reason
    return why + (f" (and {len(ms) - 1} more)" if len(ms) > 1 else "")


def _conclude(c: Criterion, res: dict[str, Any], judged: list[tuple[_Match, str, str, dict[str, Any]]],
              unknown: list[_Match], not_applicable: list[_Match]) -> dict[str, Any]:
    """The criterion's verdict over its matches: a failing match is a definite FAIL, an unavailable one
    makes it INCOMPLETE, otherwise the worst judged match; records the observed match in ``res``."""

    def worst(items: list[tuple[_Match, str, str, dict[str, Any]]]):
        sign = 1.0 if c.upper else -1.0  # larger sign * value = worse
        return max(items, key=lambda t: (RANK[t[1]], sign * t[3]["compared"]))

    failing = [t for t in judged if t[1] == FAIL]
    if failing:
        m, verdict, reason, view = worst(failing)
        res["observed"] = view
        extra = f"; {len(unknown)} other match(es) unavailable" if unknown else ""
        where = f"{format_path(m.path)}: " if WILDCARD in c.metric else ""
        return _finish(res, FAIL, f"{where}{reason}{extra}")
    if unknown:
        if judged:
            res["observed"] = worst(judged)[3]
        return _finish(res, INCOMPLETE, _unknown_reason(unknown))
    if judged:
        m, verdict, reason, view = worst(judged)
        res["observed"] = view
        where = f"{format_path(m.path)}: " if WILDCARD in c.metric else ""
        return _finish(res, verdict, f"{where}{reason}")
    if not_applicable:
        return _finish(res, NA, f"not applicable: {_unknown_reason(not_applicable)}")
    skipped = f" ({len(res['skipped'])} unavailable branch(es) skipped)" if res["skipped"] else ""
    return _finish(res, INCOMPLETE, f"no figure in results.json matches {format_path(c.metric)}{skipped}")


def evaluate_criterion(c: Criterion, doc: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate one criterion on a validated results document; returns the criterion's record."""
    res = _base(c)
    settled = _applies(c, doc)
    if settled is None:
        ref_value, settled = _reference_value(c, doc, res)
    if settled is not None:
        return _finish(res, *settled)

    matches = _with_fallbacks(doc, c, _resolve(doc, c.metric, skip_branches=c.skip_unavailable_branches))
    judged: list[tuple[_Match, str, str, dict[str, Any]]] = []
    unknown: list[_Match] = []
    not_applicable: list[_Match] = []
    for m in matches:
        if m.kind == "skipped":
            res["skipped"].append({"path": list(m.path), "path_display": format_path(m.path), "reason": m.reason})
            continue
        view = _entry_view(m)
        if m.kind == "metric" and c.reference_param is not None and _param(m.entry, c.reference_param) is None:
            m, view = _without_param(c, m, view)
        if m.kind == "metric":
            _judge_metric(c, m, view, ref_value)
            judged.append((m, view["verdict"], view["reason"], view))
        elif m.kind == "unavailable" and c.missing == "not_applicable":
            view["verdict"] = NA
            not_applicable.append(m)
        else:
            view["verdict"] = INCOMPLETE
            unknown.append(m)
        res["matches"].append(view)
    return _conclude(c, res, judged, unknown, not_applicable)


def overall_verdict(criteria: list[Mapping[str, Any]]) -> str:
    """Worst contribution (FAIL > INCOMPLETE > WARN > PASS); INCOMPLETE when nothing applied."""
    contributions = [c["contributes"] for c in criteria if c["contributes"] != NA]
    if not contributions:
        return INCOMPLETE
    return max(contributions, key=RANK.__getitem__)


def evaluate_policy(policy: Policy, doc: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    criteria = [evaluate_criterion(c, doc) for c in policy.criteria]
    return overall_verdict(criteria), criteria


# --------------------------------------------------------------------------- the run directory


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Validated results plus the sha256 of the exact bytes read (results.json, samples.npz)."""
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (give the run directory that holds results.json)")
    results_path = run_dir / "results.json"
    samples_path = run_dir / "samples.npz"
    if not results_path.is_file():
        raise UserError(f"{run_dir}: results.json is missing (the audits did not finish; "
                        "'audit run --resume --out RUN_DIR' continues the run)")
    if not samples_path.is_file():
        raise UserError(f"{run_dir}: samples.npz is missing (a sign-off covers the sample set it releases)")
    try:
        raw = results_path.read_bytes()
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{results_path}: cannot read results: {exc}") from None
    validate_results(doc, source=str(results_path))
    try:
        samples_sha = sha256_file(samples_path)
    except OSError as exc:
        raise UserError(f"{samples_path}: cannot read: {exc.strerror or exc}") from None
    covers = {
        "results.json": {"path": str(results_path), "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)},
        "samples.npz": {"path": str(samples_path), "sha256": samples_sha, "bytes": samples_path.stat().st_size},
    }
    return doc, covers


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_signoff(run_dir: Path, policy: Policy, doc: Mapping[str, Any], covers: dict[str, Any]) -> dict[str, Any]:
    verdict, criteria = evaluate_policy(policy, doc)
    counts = {v: sum(1 for c in criteria if c["verdict"] == v) for v in (PASS, WARN, FAIL, INCOMPLETE, NA)}
    run = doc.get("run", {})
    prov = doc.get("provenance", {})
    return {
        "schema": SIGNOFF_SCHEMA,
        "verdict": verdict,
        "exit_code": EXIT_CODES[verdict],
        "verdict_order": list(VERDICT_ORDER),
        "counts": counts,
        "run": {
            "dir": str(run_dir), "id": run.get("id"), "generator": run.get("generator"), "preset": run.get("preset"),
            "created_utc": run.get("created_utc"), "finished_utc": run.get("finished_utc"),
            "config_sha256": prov.get("config_sha256"), "data_hash": prov.get("data_hash"), "seed": prov.get("seed"),
            "git_commit": prov.get("git_commit"),
        },
        "covers": covers,
        "policy": {"path": policy.path, "sha256": policy.sha256, "name": policy.name, "policy_version": policy.version,
                   "description": policy.description, "shipped_default": policy.shipped},
        "cmr_audit_version": __version__,
        "created_utc": _utc_now(),
        "criteria": criteria,
        "reviewer": "",
        "reviewed_utc": "",
        "decision_notes": "",
    }


def _fmt_num(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, (int, float)):
        return f"{x:.4g}"
    return str(x)


def render_html(signoff: Mapping[str, Any]) -> str:
    """Self-contained HTML (inline CSS, no JavaScript); every string is HTML-escaped (autoescape)."""
    import jinja2  # lazy: jinja2 only when HTML is rendered

    text = resources.files("reports").joinpath("templates/signoff.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt_num
    env.filters["unit"] = lambda u: "" if u in (None, "", "1") else f" {u}"
    return env.from_string(text).render(s=signoff, order=VERDICT_ORDER)


@dataclass(frozen=True)
class SignoffResult:
    verdict: str
    exit_code: int
    signoff: dict[str, Any]
    json_path: Path
    html_path: Path


def sign_off(run_dir: str | Path, policy_path: str | Path | None = None) -> SignoffResult:
    """Evaluate the policy (the shipped default when None) on ``run_dir``; write the sign-off files.

    Everything is read, validated, evaluated and rendered before anything is written, and each
    file is written atomically: bad input leaves the run directory untouched.
    """
    run_dir = Path(run_dir)
    policy = load_policy(policy_path)
    doc, covers = _read_run(run_dir)
    signoff = build_signoff(run_dir, policy, doc, covers)
    html = render_html(signoff)
    json_path, html_path = run_dir / SIGNOFF_JSON, run_dir / SIGNOFF_HTML
    try:
        atomic_write_text(html_path, html)
        atomic_write_json(json_path, signoff)  # last: the machine-read record of this sign-off
    except OSError as exc:
        raise UserError(f"{run_dir}: cannot write the sign-off: {exc.strerror or exc}") from None
    return SignoffResult(signoff["verdict"], signoff["exit_code"], signoff, json_path, html_path)
