"""Built-in multi-vendor cine short-axis phantom (the default data of cmr-audit).

``generate_subject`` draws one subject; ``write_dataset`` writes a cohort in the ACDC or
M&Ms layout. See :mod:`cohorts.phantom.generator` for the model and
:mod:`cohorts.phantom.params` for the literature ranges.
"""

from __future__ import annotations

from .generator import ORIENTATION, OVERRIDES, PhantomSubject, generate_subject
from .params import GROUP_RANGES, GROUPS, VENDOR_STYLES, VENDORS
from .writer import ACDC_TO_MNMS, PHANTOM_VERSION, subject_plan, write_dataset

__all__ = [
    "PhantomSubject", "generate_subject", "write_dataset", "subject_plan", "GROUPS", "VENDORS",
    "VENDOR_STYLES", "GROUP_RANGES", "OVERRIDES", "ORIENTATION", "PHANTOM_VERSION", "ACDC_TO_MNMS",
]
