"""Third-party extensions through entry points: the loader, and the metric plugins (attack plugins:
:func:`audit.privacy.attacks.plugin_attacks`; generators: :mod:`generators.registry`).

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."cmr_audit.attacks"]
    my_attack = "my_pkg.attacks:MyAttack"        # a subclass of audit.privacy.attacks.Attack

    [project.entry-points."cmr_audit.metrics"]
    my_metric = "my_pkg.metrics:MyMetric"        # see PluginMetric below

    [project.entry-points."cmr_audit.generators"]
    my_gen = "my_pkg.gen:MyGenerator"            # a subclass of generators.base.Generator

Every group is loaded defensively: a plugin that fails to import or to construct is *listed as
broken with its error* (``audit plugins``, and as an unavailable entry in ``results.json``)
and everything else keeps working. A plugin metric's figures go to
``results[<its section>]["plugins"][<name>]`` and must be metric or unavailable entries
(:func:`audit.core.results.metric` / :func:`audit.core.results.unavailable`); anything else is recorded as
unavailable with the reason, never as a number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Mapping, Protocol

log = logging.getLogger(__name__)

ATTACKS = "cmr_audit.attacks"
METRICS = "cmr_audit.metrics"
GENERATORS = "cmr_audit.generators"
#: sections a plugin metric may write to
METRIC_SECTIONS = ("privacy", "fidelity", "anatomy", "utility")


@dataclass
class Plugin:
    """One entry point: the constructed object, or the error that prevented it."""

    name: str
    group: str
    source: str
    obj: Any = None
    error: str = ""

    @property
    def broken(self) -> bool:
        return bool(self.error)


class PluginMetric(Protocol):
    """What a ``cmr_audit.metrics`` entry point provides (a class, constructed without arguments)."""

    #: results section the figures belong to (one of METRIC_SECTIONS)
    section: str
    description: str

    def compute(self, samples: Any, real: Mapping[str, Any], *, seed: int) -> Mapping[str, Any]:
        """``samples``: the run's SampleSet; ``real``: SliceSets by split name (train, holdout,
        reference, test; None for an empty split). Returns ``{figure: entry}``."""


def load(group: str, check: Any = None) -> list[Plugin]:
    """Load and construct every entry point of ``group``; ``check(obj)`` returns an error or ''."""
    out = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        p = Plugin(ep.name, group, ep.value)
        try:
            obj = ep.load()
            p.obj = obj() if isinstance(obj, type) else obj
            p.error = check(p.obj) if check else ""
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the audit
            p.error = f"{type(exc).__name__}: {exc}"
        if p.error:
            p.obj = None
            log.warning("plugin %s (%s = %s) is broken: %s", ep.name, group, ep.value, p.error)
        out.append(p)
    return out


def check_metric(obj: Any) -> str:
    if not callable(getattr(obj, "compute", None)):
        return f"{type(obj).__name__} has no compute(samples, real, *, seed) method"
    if getattr(obj, "section", None) not in METRIC_SECTIONS:
        return f"metric section must be one of {', '.join(METRIC_SECTIONS)}, got {getattr(obj, 'section', None)!r}"
    return ""


def metrics() -> list[Plugin]:
    return load(METRICS, check_metric)
