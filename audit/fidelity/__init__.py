"""Fidelity metrics: how close the synthetic images are to real ones.

Modules: :mod:`.distribution` (FID, KID, precision / recall / density / coverage between
feature sets, with subject-level bootstrap CIs) and :mod:`.paired` (PSNR, SSIM, MS-SSIM of
paired images, e.g. SDEdit outputs vs their reference or autoencoder reconstructions).
"""
