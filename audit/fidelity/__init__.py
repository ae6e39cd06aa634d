"""Fidelity metrics: how close the synthetic images are to real ones.

Modules: :mod:`.distribution` (FID, KID, precision / recall / density / coverage between
feature sets, with subject-level bootstrap CIs: the entry point and the methods; the statistics
in :mod:`.frechet`, :mod:`.kid`, :mod:`.prdc` and :mod:`.distribution_stats`, the entries' words
in :mod:`.distribution_notes`) and :mod:`.paired` (PSNR, SSIM, MS-SSIM of paired images, e.g.
SDEdit outputs vs their reference or autoencoder reconstructions).
"""
