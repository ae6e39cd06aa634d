"""Read-only access to ``results.json`` for the run report that remembers which entries a section
placed, so that the rest can be listed in "other figures" tables and nothing is silently dropped."""

from __future__ import annotations

from typing import Any, Mapping

from audit.core.results import iter_entries
from reports.formatting import is_entry, label


class Results:
    """Read-only access to ``results.json`` that remembers which entries the report placed,
    so the rest can be listed in "other figures" tables."""

    def __init__(self, doc: Mapping[str, Any] | None):
        self.doc = doc or {}
        self.used: set[str] = set()

    def node(self, *path: str) -> Any:
        cur: Any = self.doc
        for p in path:
            if not isinstance(cur, Mapping) or p not in cur:
                return None
            cur = cur[p]
        return cur

    def entry(self, *path: str) -> Mapping[str, Any] | None:
        n = self.node(*path)
        if is_entry(n):
            self.used.add(".".join(path))
            return n
        return None

    def mark(self, *path: str) -> None:
        """Mark every entry at or below ``path`` as placed."""

        n = self.node(*path)
        prefix = ".".join(path)
        if is_entry(n):
            self.used.add(prefix)
        elif isinstance(n, Mapping):
            for k, _ in iter_entries(n):
                self.used.add(f"{prefix}.{k}")

    def section_reasons(self, section: str) -> list[str]:
        """Unavailable reasons recorded directly at the top of a section (e.g. ``utility.audit``)."""
        node = self.node(section)
        out = []
        if isinstance(node, Mapping):
            for key, value in node.items():
                if is_entry(value) and value.get("status") == "unavailable":
                    self.used.add(f"{section}.{key}")
                    out.append(f"{label(key)}: {value.get('reason')}")
        return out

    def leftovers(self, section: str) -> list[tuple[str, Mapping[str, Any]]]:
        node = self.node(section)
        if not isinstance(node, Mapping):
            return []
        return [(k, e) for k, e in iter_entries(node) if f"{section}.{k}" not in self.used]
