"""cmr-audit: privacy and fidelity audits for synthetic cardiac MRI (the ``audit`` CLI, attacks, metrics)."""

__version__ = "0.1.0"
