"""Patch discriminator and its losses, shared by the ``gan`` family and the adversarial term of
the latent autoencoder (:mod:`generators.autoencoder`).

* :class:`PatchDiscriminator`: a PatchGAN (Isola et al. 2017, pix2pix) -- strided 4x4
  convolutions and a 3x3 head give one logit per receptive-field patch -- with spectral
  normalisation (Miyato et al. 2018) on every layer.
* :func:`hinge_d_loss`: the discriminator's hinge loss (Lim & Ye 2017),
  ``E[relu(1 - D(x))] + E[relu(1 + D(G))]``.
* :func:`feature_matching`: the mean over layers of the L1 distance between the
  discriminator's intermediate features of generated and real images (Wang et al. 2018,
  pix2pixHD); it stabilises the generator side of the game.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm


class PatchDiscriminator(nn.Module):
    """PatchGAN; ``sn=False`` drops spectral normalisation (DP-SGD: its power iteration
    reparametrises the weight, which per-sample gradient hooks cannot follow; per-unit
    clipping then bounds the discriminator's updates instead)."""

    def __init__(self, in_ch: int, channels: list[int], sn: bool = True):
        super().__init__()
        norm = spectral_norm if sn else (lambda m: m)
        layers, c = [], in_ch
        for i, ch in enumerate(channels):
            layers.append(norm(nn.Conv2d(c, ch, 4, stride=2 if i < len(channels) - 1 else 1, padding=1)))
            c = ch
        self.layers = nn.ModuleList(layers)
        self.head = norm(nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            feats.append(x)
        return self.head(x), feats


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def feature_matching(fake_feats: Sequence[torch.Tensor], real_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum(F.l1_loss(a, b) for a, b in zip(fake_feats, real_feats)) / len(real_feats)
