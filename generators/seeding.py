"""Per-step seeds: one deterministic torch seed per (run seed, step), shared by the training loop
and the DP machinery so that a resumed run draws exactly the batches and noise it would have drawn."""

from __future__ import annotations

import numpy as np


def step_seed(seed: int, step: int) -> int:
    """A 63-bit torch seed derived from (seed, step) via NumPy's SeedSequence."""
    return int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1, np.uint64)[0]) & ((1 << 63) - 1)
