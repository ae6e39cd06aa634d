"""The audit pipeline: run configuration, run directory, run context, stages and their orchestration."""
