"""Differentially private training (DP-SGD through Opacus) for the trainable generators.

* :mod:`.accountant` -- the privacy ledger: every Gaussian mechanism a run applies to private
  data (one entry per training phase), composed by one accountant; noise calibration to a target
  epsilon over the whole plan; epsilon by RDP and PRV.
* :mod:`.plan` -- user settings -> a validated plan (privacy unit, delta, sampling rates, noise),
  with every impossible request refused before training.
* :mod:`.sgd` -- the training-time machinery: Poisson sampling of privacy units with Opacus'
  sampler, Opacus per-sample gradients (``GradSampleModule``) aggregated per unit, clipped and
  noised by Opacus' ``DPOptimizer``, and the guards that turn a silently lost guarantee into an
  error.
"""
