"""Base layer: errors, atomic I/O, paths, locks, logging, provenance, tables and results entries.

Imports nothing else of the project (checked by the import contract in pyproject.toml).
"""
