"""Suite-wide settings: caches stay inside the checkout, never in the user's ~/.cache."""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

# Judge weights, phantoms, prepared cohorts and autoencoders are cached between test runs in
# .pytest_cache (git-ignored); a fresh CI clone starts empty. Tests that check caching itself
# point CMR_AUDIT_CACHE at their own tmp_path.
os.environ.setdefault("CMR_AUDIT_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "cmr-audit-cache"))
