"""``gan``: mask-conditioned GAN with a SPADE generator and a spectral-norm patch discriminator.

Generator (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive
Normalization", SPADE): a latent vector ``z`` is projected to a coarse feature map and
upsampled through residual blocks whose normalisation is modulated, per pixel, by the
conditioning map (mask one-hot + vendor + group one-hots). The mask only describes the
heart, so chest wall, lungs and liver must come from the noise: ``z`` sets the global
appearance and per-block noise injection (Karras et al. 2019, StyleGAN) gives texture.
GroupNorm replaces SPADE's batch norm (batch-size independent; Opacus-friendly).

Discriminator: a PatchGAN (Isola et al. 2017, pix2pix) on image + conditioning map with
spectral normalisation (Miyato et al. 2018), trained with the hinge loss (Lim & Ye 2017).
The generator loss adds discriminator feature matching (Wang et al. 2018, pix2pixHD) and a
small L1 term on 4x-average-pooled images, which anchors tissue intensities to the mask
without asking for pixel-exact (blurry) backgrounds. Two-time-scale learning rates (Heusel
et al. 2017: TTUR) as in SPADE.

White-box score (LOGAN, Hayes et al. 2019): the mean discriminator logit of an image with
its mask -- an overfitted discriminator scores its training images higher.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from audit.core.errors import UserError
from generators.conditioning import N_LABELS, Vocab, check_masks, one_hot
from generators.discriminator import PatchDiscriminator, feature_matching, hinge_d_loss
from generators.mask2d import MaskConditioned2D


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


def cond_map(mask_oh: torch.Tensor, vendor: torch.Tensor, group: torch.Tensor, vocab: Vocab) -> torch.Tensor:
    """Mask one-hot plus spatially constant vendor / group one-hots (null index included)."""
    n, _, h, w = mask_oh.shape
    v = F.one_hot(vendor, vocab.null_vendor + 1).float().view(n, -1, 1, 1).expand(-1, -1, h, w)
    g = F.one_hot(group, vocab.null_group + 1).float().view(n, -1, 1, 1).expand(-1, -1, h, w)
    return torch.cat([mask_oh, v, g], dim=1)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation. ``shared`` is the conditioning embedding computed once
    per block (a 3x3 conv of the condition map); gamma and beta are 1x1 projections of it --
    9x cheaper than SPADE's 3x3 projections, which dominated the cost at full resolution on a
    CPU, with the spatial context already in the shared 3x3 conv."""

    def __init__(self, ch: int, hidden: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch, affine=False)
        self.gamma_beta = nn.Conv2d(hidden, 2 * ch, 1)

    def forward(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma_beta(shared).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class SPADEBlock(nn.Module):
    """SPADE residual block; with ``noise`` a per-channel learned scale of a noise image is added
    (a bias-free 1x1 convolution of the noise: a standard layer, so Opacus computes its
    per-sample gradients)."""

    def __init__(self, cin: int, cout: int, cond_ch: int, hidden: int, noise: bool = True):
        super().__init__()
        mid = min(cin, cout)
        self.shared = nn.Sequential(nn.Conv2d(cond_ch, hidden, 3, padding=1), nn.ReLU())
        self.n0, self.c0 = SPADE(cin, hidden), nn.Conv2d(cin, mid, 3, padding=1)
        self.n1, self.c1 = SPADE(mid, hidden), nn.Conv2d(mid, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()
        self.noise = None
        if noise:
            self.noise = nn.Conv2d(1, cout, 1, bias=False)
            nn.init.zeros_(self.noise.weight)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        a = self.shared(F.interpolate(cond, size=x.shape[-2:], mode="nearest"))
        h = self.c0(F.leaky_relu(self.n0(x, a), 0.2))
        h = self.c1(F.leaky_relu(self.n1(h, a), 0.2))
        out = self.skip(x) + h
        return out if noise is None or self.noise is None else out + self.noise(noise)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the noise scale became a 1x1 convolution
        old = state_dict.pop(prefix + "noise_scale", None)
        if old is not None and self.noise is not None:
            state_dict[prefix + "noise.weight"] = old.reshape(-1, 1, 1, 1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SPADEGenerator(nn.Module):
    def __init__(self, shape: tuple[int, int], cond_ch: int, channels: list[int], z_dim: int, hidden: int):
        super().__init__()
        ups = len(channels) - 1
        if shape[0] % 2**ups or shape[1] % 2**ups:
            raise UserError(f"gan: image size {shape} must be divisible by 2^{ups} (len(channels)-1 upsamplings)")
        self.base = (shape[0] // 2**ups, shape[1] // 2**ups)
        self.z_dim = z_dim
        self.fc = nn.Linear(z_dim, channels[0] * self.base[0] * self.base[1])
        self.blocks = nn.ModuleList(
            [SPADEBlock(channels[i], channels[i + 1], cond_ch, hidden) for i in range(ups)]
        )
        self.out = nn.Conv2d(channels[-1], 1, 3, padding=1)
        self.c0 = channels[0]

    def forward(self, cond: torch.Tensor, z: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:
        x = self.fc(z).view(-1, self.c0, *self.base)
        for block, noise in zip(self.blocks, noises):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x, cond, noise)
        return torch.sigmoid(self.out(F.leaky_relu(x, 0.2)))

    def noise_shapes(self, n: int) -> list[tuple[int, ...]]:
        h, w = self.base
        return [(n, 1, h * 2 ** (i + 1), w * 2 ** (i + 1)) for i in range(len(self.blocks))]


class GANGenerator(MaskConditioned2D):
    name = "gan"
    family = "gan"
    description = "mask-conditioned GAN: SPADE generator with noise injection, spectral-norm patch discriminator, hinge loss"
    defaults: ClassVar[Mapping[str, Any]] = {
        "channels": [128, 64, 32, 16, 8],
        "z_dim": 64,
        "spade_hidden": 16,
        "d_channels": [16, 32, 64, 64],
        "lr_g": 1e-4,
        "lr_d": 4e-4,
        "fm_weight": 10.0,
        "l1_weight": 10.0,
        "spectral_norm": True,
    }
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"generator_options.channels": [16, 16, 8], "generator_options.d_channels": [8, 16],
                  "generator_options.spade_hidden": 8, "generator_options.z_dim": 8},
        # 2400 steps at batch 16 fill the quick preset's 900 s fit budget on a 2-core CPU (0.30-0.34 s
        # per step with bf16 and the periodic checkpoints); 1500 steps used half of it. The length
        # follows the budget, not a quality score (BENCHMARKS.md "Generators on real ACDC": gan)
        "quick": {"train.steps": 2400, "train.batch_size": 16, "train.ema_warmup_steps": 300},
        "full": {"train.steps": 4000, "train.batch_size": 64, "generator_options.channels": [256, 128, 64, 32, 16],
                 "generator_options.spade_hidden": 64, "generator_options.d_channels": [64, 128, 256, 256]},
    }
    ema_nets: ClassVar[tuple[str, ...]] = ("g",)
    #: under DP both networks release noisy gradients each step: the generator reads the private
    #: masks (and, through feature matching and L1, the private images), so it is private too
    dp_releases: ClassVar[int] = 2

    def dp_adjust_options(self) -> list[str]:
        if self.options["spectral_norm"]:
            self.options["spectral_norm"] = False
            return ["spectral_norm=false (discriminator): spectral norm cannot be trained with per-sample gradients"]
        return []

    def dp_notes(self) -> list[str]:
        return ["both discriminator and generator are trained with DP-SGD: a mask-conditioned generator reads the "
                "private masks (and its feature-matching and L1 terms read the private images), so DP on the "
                "discriminator alone would not cover it; two noisy releases per step are composed in the ledger"]

    def build(self, train: bool) -> None:
        assert self.vocab is not None and self.shape is not None
        o = self.options
        cond_ch = N_LABELS + self.vocab.null_vendor + 1 + self.vocab.null_group + 1
        self.nets = nn.ModuleDict({
            "g": SPADEGenerator(self.shape, cond_ch, list(o["channels"]), int(o["z_dim"]), int(o["spade_hidden"])),
            "d": PatchDiscriminator(1 + cond_ch, list(o["d_channels"]), sn=bool(o["spectral_norm"])),
        })
        if train:
            self.optimizers = {
                "g": torch.optim.Adam(self.nets["g"].parameters(), lr=o["lr_g"], betas=(0.0, 0.999)),
                "d": torch.optim.Adam(self.nets["d"].parameters(), lr=o["lr_d"], betas=(0.0, 0.999)),
            }

    def _noise(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        g = self.nets["g"]
        return self._randn((n, g.z_dim), generator), [self._randn(s, generator) for s in g.noise_shapes(n)]

    def train_step(self, batch, step, rng):
        o = self.options
        G, D = self.nets["g"], self.nets["d"]
        real = batch["image"]
        cond = cond_map(one_hot(batch["mask"]), batch["vendor"], batch["group"], self.vocab)
        z, noises = self._noise(real.shape[0])
        fake = G(cond, z, noises)
        # discriminator: hinge loss
        d_real, _ = D(torch.cat([real, cond], 1))
        d_fake, _ = D(torch.cat([fake.detach(), cond], 1))
        loss_d = hinge_d_loss(d_real, d_fake)
        self.optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["d"].step()
        # generator: adversarial + feature matching + coarse L1. The discriminator is frozen: its
        # parameter gradients would be discarded, and under DP they must not be recorded.
        with self.frozen(D):
            d_fake, f_fake = D(torch.cat([fake, cond], 1))
            with torch.no_grad():
                _, f_real = D(torch.cat([real, cond], 1))
            adv = -d_fake.mean()
            fm = feature_matching(f_fake, f_real)
            l1 = F.l1_loss(F.avg_pool2d(fake, 4), F.avg_pool2d(real, 4))
            loss_g = adv + o["fm_weight"] * fm + o["l1_weight"] * l1
            self.optimizers["g"].zero_grad(set_to_none=True)
            loss_g.backward()
        self.optimizers["g"].step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "adv": adv.item(), "fm": fm.item(), "l1": l1.item()}

    def generate(self, mask_oh, vendor, group, generator):
        z, noises = self._noise(mask_oh.shape[0], generator)
        return self.nets["g"](cond_map(mask_oh, vendor, group, self.vocab), z, noises)

    @torch.no_grad()
    def score(self, images: np.ndarray, masks: np.ndarray | None = None, *, seed: int = 0, vendor=None, group=None) -> np.ndarray:
        """LOGAN score: mean discriminator logit of each image with its mask (higher = more member-like)."""
        if self.nets is None or self.vocab is None:
            raise UserError("generator 'gan' has not been fitted or loaded")
        if masks is None:
            raise UserError("the gan discriminator score needs each image's mask")
        check_masks(masks, self.shape, self.name)
        self.nets.eval()
        v, g = self.vocab.encode(vendor, group, len(images))
        out = []
        for lo in range(0, len(images), 64):
            x = self._tensor(images[lo:lo + 64], torch.float32).unsqueeze(1)
            cond = cond_map(one_hot(self._tensor(masks[lo:lo + 64])), v[lo:lo + 64].to(self.device),
                            g[lo:lo + 64].to(self.device), self.vocab)
            logits, _ = self.nets["d"](torch.cat([x, cond], 1))
            out.append(logits.mean(dim=(1, 2, 3)).cpu().numpy())
        return np.concatenate(out).astype(np.float64)
