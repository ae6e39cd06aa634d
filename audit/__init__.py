"""cmr-audit: privacy and fidelity audits for synthetic cardiac MRI (the ``audit`` CLI, attacks, metrics)."""

from importlib import metadata

try:
    __version__ = metadata.version("cmr-audit")  # one source: pyproject.toml
except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
    __version__ = "0+unknown"
