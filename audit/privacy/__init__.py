"""Privacy audit: membership inference, memorisation, DP verification.

Entry points: :func:`privacy_section` (returns the ``privacy`` results section, the per-image
risk table and report extras) and :func:`write_artifacts` (``privacy_per_sample.csv``,
``privacy_curves.json``). Modules: :mod:`.attacks`, :mod:`.metrics`, :mod:`.memorisation`,
:mod:`.dp_verify`, :mod:`.space`, :mod:`.design` (which subjects are members, non-members and attacker data).
"""

from audit.privacy.section import MIN_IMAGES, MIN_SUBJECTS, privacy_section, write_artifacts

__all__ = ["privacy_section", "write_artifacts", "MIN_IMAGES", "MIN_SUBJECTS"]
