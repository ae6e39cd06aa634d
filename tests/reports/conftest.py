"""Shared helpers of the report tests: sibling modules loaded once by path under fixed names.

pytest runs with ``--import-mode=importlib`` (test folders are not packages), so helper modules
cannot be imported by package path; this conftest runs before the test modules are collected
and registers them in ``sys.modules``, so tests simply ``import cmr_audit_test_signoff_fixtures``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SIBLINGS = {"cmr_audit_test_signoff_fixtures": "test_signoff_fixtures.py", "cmr_audit_test_run_report": "test_run_report.py",
            "cmr_audit_test_compare": "test_compare.py"}


def load_sibling(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(SIBLINGS[name]))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


for _name in SIBLINGS:
    load_sibling(_name)
