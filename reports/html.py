"""Rendering the HTML reports: the Jinja2 environment over ``reports/templates`` (autoescaping on)
and the package version printed in each report's footer."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path


def package_version() -> str:
    """The installed cmr-audit version, ``"unknown"`` when it is not installed."""
    try:
        return version("cmr-audit")
    except Exception:  # noqa: BLE001
        return "unknown"


def environment():
    """The Jinja2 environment of the report templates (autoescape, strict undefined)."""
    import jinja2  # lazy: jinja2 only when HTML is rendered

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
