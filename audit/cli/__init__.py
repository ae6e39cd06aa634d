"""The ``audit`` command line (typer)."""
