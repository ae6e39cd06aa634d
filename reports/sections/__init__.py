"""The sections of the run report, one module each (verdict tiles, inputs, privacy, fidelity,
anatomy, utility, samples, provenance); :mod:`reports.sections.base` holds what they share: the
section and figure records and the build context with its one section opener."""
