"""Deterministic, subject-level, stratified splits (never by slice: slices of one subject
are near-duplicates, and a subject on both sides would make membership inference and
downstream Dice meaningless).

Standard splits:

* ``train``     - the only subjects any generator is fitted on;
* ``holdout``   - non-members for membership inference (never trained on);
* ``reference`` - other real subjects from the same population, the attacker's data for
  density-ratio attacks and the ``holdout`` reference generator;
* ``test``      - downstream (segmentation utility) evaluation.

Algorithm (:func:`make_splits`): group subjects by (vendor, group); shuffle subjects
inside each stratum and the order of strata with ``numpy.random.default_rng(seed)``; then
deal the concatenated list one by one to the split whose quota is most behind
(``fraction * dealt_so_far - count``, ties to the earlier split). Dealing a contiguous
stratum this way gives every split a share of it proportional to its fraction (within one
subject) and global sizes within one subject of ``fraction * n``. If a split with a
positive fraction ended up empty, a subject from the split furthest above its quota is
moved to it; if there are fewer subjects than such splits, that is a :class:`UserError`.

Leave-one-vendor-out (:func:`make_lovo_splits`): every subject of the held-out vendor
(default: the last vendor alphabetically) goes to ``unseen_vendor_test`` and nowhere else;
the remaining subjects are dealt into the four standard splits as above.

A split file is JSON with the cohort's ``data_hash``, the seed, the fractions and the ids;
loading it against a cohort with a different hash is a :class:`UserError` naming the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import numpy as np

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError

from .types import Cohort

__all__ = [
    "SPLIT_NAMES",
    "DEFAULT_FRACTIONS",
    "UNSEEN",
    "Splits",
    "make_splits",
    "make_lovo_splits",
    "save_splits",
    "load_splits",
    "check_split_document",
]

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "holdout", "reference", "test")
UNSEEN = "unseen_vendor_test"
DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.4, "holdout": 0.2, "reference": 0.2, "test": 0.2}
SCHEMA = "cmr-audit/splits/v1"


@dataclass
class Splits:
    """Subject ids per split plus what is needed to reproduce and check them."""

    assignments: dict[str, list[str]]
    data_hash: str
    seed: int
    fractions: dict[str, float]
    kind: str = "standard"  # or "lovo"
    heldout_vendor: str | None = None
    strata: dict[str, dict[str, int]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> list[str]:
        return self.assignments[name]

    @property
    def names(self) -> list[str]:
        return list(self.assignments)

    def split_of(self, subject_id: str) -> str | None:
        for name, ids in self.assignments.items():
            if subject_id in ids:
                return name
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "data_hash": self.data_hash,
            "seed": self.seed,
            "fractions": self.fractions,
            "heldout_vendor": self.heldout_vendor,
            "splits": self.assignments,
            "strata": self.strata,
        }


def _check_fractions(fractions: Mapping[str, float] | None) -> dict[str, float]:
    f = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    unknown = sorted(set(f) - set(SPLIT_NAMES))
    if unknown:
        raise UserError(f"splits: unknown split name(s) {unknown}; use {', '.join(SPLIT_NAMES)}")
    f = {k: float(f.get(k, 0.0)) for k in SPLIT_NAMES}
    if any(not np.isfinite(v) or v < 0 for v in f.values()):
        raise UserError(f"splits: fractions must be finite and >= 0, got {f}")
    total = sum(f.values())
    if total <= 0:
        raise UserError("splits: at least one fraction must be positive")
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"splits: fractions must sum to 1, got {total:g} ({f})")
    return f


def _check_seed(seed: Any) -> int:
    """Seeds lie in [0, 2**32) (what the split file schema allows, and ``audit run`` checks)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise UserError(f"splits: the seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def _deal(cohort: Cohort, ids: list[str], fractions: dict[str, float], rng: np.random.Generator) -> dict[str, list[str]]:
    keep = set(ids)
    strata: dict[tuple[str, str], list[str]] = {}
    for key, members in cohort.strata().items():
        members = sorted(m for m in members if m in keep)
        if members:
            strata[key] = members
    keys = sorted(strata)
    order = [keys[i] for i in rng.permutation(len(keys))]
    sequence: list[str] = []
    for key in order:
        members = strata[key]
        sequence += [members[i] for i in rng.permutation(len(members))]
    names = list(SPLIT_NAMES)
    frac = np.array([fractions[n] for n in names])
    counts = np.zeros(len(names), dtype=int)
    out: dict[str, list[str]] = {n: [] for n in names}
    for k, sid in enumerate(sequence, start=1):
        deficit = frac * k - counts
        deficit[frac == 0] = -np.inf
        j = int(np.argmax(deficit))
        counts[j] += 1
        out[names[j]].append(sid)
    wanted = [n for n in names if fractions[n] > 0]
    if len(sequence) < len(wanted):
        raise UserError(
            f"splits: {len(sequence)} subject(s) cannot fill {len(wanted)} non-empty splits ({', '.join(wanted)})"
        )
    total = len(sequence)
    for n in wanted:
        if not out[n]:
            # Take from the split furthest above its quota (it has more than one subject).
            donors = [m for m in wanted if len(out[m]) > 1]
            donor = max(donors, key=lambda m: len(out[m]) - fractions[m] * total)
            out[n].append(out[donor].pop())
    return {n: sorted(v) for n, v in out.items()}


def _strata_table(cohort: Cohort, assignments: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for name, ids in assignments.items():
        for sid in ids:
            s = cohort[sid]
            key = f"{s.vendor}/{s.group}"
            table.setdefault(key, {}).setdefault(name, 0)
            table[key][name] += 1
    return dict(sorted(table.items()))


def make_splits(cohort: Cohort, fractions: Mapping[str, float] | None = None, seed: int = 0) -> Splits:
    """Stratified (vendor x group) subject-level ``train/holdout/reference/test`` splits."""
    f = _check_fractions(fractions)
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    assignments = _deal(cohort, cohort.ids, f, rng)
    return Splits(assignments, cohort.data_hash, seed, f, "standard", None, _strata_table(cohort, assignments))


def make_lovo_splits(
    cohort: Cohort, heldout_vendor: str | None = None, fractions: Mapping[str, float] | None = None, seed: int = 0
) -> Splits:
    """Leave-one-vendor-out: the held-out vendor's subjects go only to ``unseen_vendor_test``."""
    vendors = cohort.vendors
    if len(vendors) < 2:
        raise UserError(f"splits: leave-one-vendor-out needs at least two vendors, cohort {cohort.name} has {vendors}")
    held = vendors[-1] if heldout_vendor is None else str(heldout_vendor)
    if held not in vendors:
        raise UserError(f"splits: vendor {held!r} not in cohort {cohort.name} (vendors: {', '.join(vendors)})")
    f = _check_fractions(fractions)
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    rest = [s.subject_id for s in cohort if s.vendor != held]
    assignments = _deal(cohort, rest, f, rng)
    assignments[UNSEEN] = sorted(s.subject_id for s in cohort if s.vendor == held)
    return Splits(assignments, cohort.data_hash, seed, f, "lovo", held, _strata_table(cohort, assignments))


def save_splits(splits: Splits, path: str | Path) -> Path:
    """Write the splits as JSON (atomically)."""
    return atomic_write_json(path, splits.to_dict())


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    """The split-file JSON Schema (package data ``cohorts/splits-v1.schema.json``)."""
    text = resources.files("cohorts").joinpath("splits-v1.schema.json").read_text("utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


def _no_constant(name: str) -> Any:
    """``json.loads(parse_constant=...)``: NaN and Infinity are not JSON (Python reads them)."""
    raise ValueError(f"{name} is not a JSON number")


def check_split_document(d: Any, source: str | Path) -> None:
    """Raise :class:`UserError` naming ``source`` and the first offending field unless ``d``
    (a parsed split file) has the structure :func:`save_splits` writes (the JSON Schema in
    ``cohorts/splits-v1.schema.json``): a file with the right ``schema`` string but, say, a
    number among the ids or no ``data_hash`` must fail here, not as a traceback in a stage."""
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise UserError(f"{source}: not a cmr-audit split file (expected schema {SCHEMA})")
    errors = sorted(_validator().iter_errors(d), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "<top>"
        message = " ".join(err.message.split())
        if len(message) > 200:
            message = message[:197] + "..."
        raise UserError(f"{source}: invalid split file at '{where}': {message}")


def load_splits(path: str | Path, cohort: Cohort | str | None = None) -> Splits:
    """Read a split file; if ``cohort`` (or a data hash) is given, the hashes must match.

    Without ``cohort`` only the file itself is checked (what ``audit run`` does before any stage,
    so that a bad ``--split-file`` costs nothing)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise UserError(f"{path}: split file not found") from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: not JSON / not UTF-8
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{path}: not a readable split file ({text})") from None
    check_split_document(d, path)
    expected = cohort.data_hash if isinstance(cohort, Cohort) else cohort
    if expected is not None and d.get("data_hash") != expected:
        raise UserError(
            f"{path}: split was made for data hash {str(d.get('data_hash'))[:12]}..., "
            f"but the cohort's data hash is {expected[:12]}... (the dataset changed; make new splits)"
        )
    assignments = {str(k): [str(i) for i in v] for k, v in d["splits"].items()}
    seen: dict[str, str] = {}
    for name, ids in assignments.items():
        for sid in ids:
            if sid in seen:
                where = f"twice in {name}" if seen[sid] == name else f"in both {seen[sid]} and {name}"
                raise UserError(f"{path}: subject {sid!r} is {where}")
            seen[sid] = name
    if isinstance(cohort, Cohort):
        unknown = sorted(set(seen) - set(cohort.ids))
        if unknown:
            raise UserError(f"{path}: subject(s) {unknown[:5]} not in cohort {cohort.name}")
    return Splits(
        assignments=assignments,
        data_hash=d["data_hash"],
        seed=int(d.get("seed", 0)),
        fractions={k: float(v) for k, v in d.get("fractions", {}).items()},
        kind=str(d.get("kind", "standard")),
        heldout_vendor=d.get("heldout_vendor"),
        strata=d.get("strata", {}),
    )
