"""Training-time augmentation of the utility nets: what every setting gets, and the strong
conventional pipeline of the ``real+augmentation`` baseline.

Every setting (:func:`audit.utility.net.train_segmenter`):

* :func:`spatial_augment` -- a random affine per image (``TrainSpec.spatial_p``);
* :func:`random_crop` -- a training patch with foreground oversampling (``TrainSpec.crop``);
* :func:`augment` -- a light intensity change (gamma, scale, shift, noise).

No mirroring anywhere: every image the audit sees has the same short-axis orientation (RV on
one side of the LV); a mirrored heart is an image the net never meets, and flips made the small
CPU-budget nets less accurate and less stable in the measured trials.

The ``real+augmentation`` setting adds :func:`strong_augment` before the crop: the "ad-hoc"
augmentation that *Can Diffusion Models Bridge the Domain Gap in Cardiac MR Imaging?* (Wong et
al., arXiv 2508.06327) compares synthetic data against, built from MONAI transforms (MONAI
Consortium, arXiv 2211.02701) with nnU-Net-like ranges (Isensee et al. 2021, Nature Methods
18:203-211): a stronger affine (rotation +-30 degrees, scale 0.7-1.4), an elastic deformation,
a smooth multiplicative bias field (the coil-sensitivity inhomogeneity of MRI), gamma,
contrast scaling, Gaussian noise and Gaussian blur, each with its own probability, clipped to
[0, 1]. The image and its mask share every spatial draw (bilinear for the image, nearest for
the mask). MONAI's transforms are used rather than hand-written ones: they are the field's
tested implementations and their random state is seedable (``set_random_state``), so two
trainings with the same seed see the same augmented batches.
"""

from __future__ import annotations

import math

import torch

def _affine_grid(shape, u: torch.Tensor, p: float, rotate: float, scale: tuple[float, float], shift: float
                 ) -> torch.Tensor:
    """Sampling grid of a random affine per image from uniforms ``u`` (columns 0-4: on/off with
    probability ``p``, rotation within +-``rotate`` degrees, isotropic scale in ``scale``, x and y
    translation within +-``shift`` of the field of view)."""
    on = (u[:, 0] < p).float()
    ang = torch.deg2rad((u[:, 1] * 2 - 1) * rotate) * on
    sc = 1.0 + (scale[0] + (scale[1] - scale[0]) * u[:, 2] - 1.0) * on
    tx, ty = (u[:, 3] * 2 - 1) * 2 * shift * on, (u[:, 4] * 2 - 1) * 2 * shift * on
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    return torch.nn.functional.affine_grid(theta, list(shape), align_corners=False)


def spatial_augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, p: float,
                    *, rotate: float = 15.0, scale: tuple[float, float] = (0.85, 1.15), shift: float = 0.1
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random affine per image with probability ``p``: rotation within +-``rotate`` degrees,
    isotropic scale in ``scale``, translation within +-``shift`` of the field of view; bilinear
    for images, nearest for masks, zero padding. No mirroring (see the module docstring)."""
    u = torch.rand(x.shape[0], 5, generator=gen)
    grid = _affine_grid(x.shape, u, p, rotate, scale, shift)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = torch.nn.functional.grid_sample(y.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return x, y.long()


def random_crop(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, size: int, foreground_p: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``size`` x ``size`` patch of every image of a batch ``(B,1,H,W)`` and of its mask.

    With probability ``foreground_p`` the patch is centred on a labelled pixel drawn uniformly from
    those on a 4-pixel lattice (nnU-Net's foreground oversampling, Isensee et al. 2021, Nature
    Methods 18:203-211), else on a uniform position; the window is shifted to lie inside the image.
    A patch at least as large as the image returns the batch unchanged."""
    b, _, h, w = x.shape
    if size >= h and size >= w:
        return x, y
    sh, sw = min(size, h), min(size, w)
    u = torch.rand(b, 3, generator=gen)
    stride = 4  # foreground centres drawn on a 4-pixel lattice: 16x fewer pixels to search, same spread
    coarse = y[:, 0, ::stride, ::stride] > 0
    xs, ys = [], []
    for i in range(b):
        fg = torch.nonzero(coarse[i]) * stride if float(u[i, 0]) < foreground_p else None
        if fg is not None and len(fg):
            cy, cx = (int(v) for v in fg[min(int(float(u[i, 1]) * len(fg)), len(fg) - 1)])
        else:
            cy, cx = int(float(u[i, 1]) * h), int(float(u[i, 2]) * w)
        top = min(max(cy - sh // 2, 0), h - sh)
        left = min(max(cx - sw // 2, 0), w - sw)
        xs.append(x[i, :, top:top + sh, left:left + sw])
        ys.append(y[i, :, top:top + sh, left:left + sw])
    return torch.stack(xs), torch.stack(ys)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random intensity change (gamma, scale, shift, noise) of a batch ``(B,1,H,W)``; masks unchanged."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=gen)
    gamma = torch.exp((u[:, 0] - 0.5) * 0.5).view(b, 1, 1, 1)  # log-uniform in [e^-0.25, e^0.25]
    scale = (0.9 + 0.2 * u[:, 1]).view(b, 1, 1, 1)
    shift = (-0.05 + 0.1 * u[:, 2]).view(b, 1, 1, 1)
    sigma = (0.02 * u[:, 3]).view(b, 1, 1, 1)
    noise = torch.randn(x.shape, generator=gen) * sigma
    x = (x.clamp(0, 1) ** gamma * scale + shift + noise).clamp(0, 1)
    return x, y




class StrongAugment:
    """The strong conventional pipeline (module docstring) for a batch ``(B,1,H,W)`` and its masks;
    seeded once, then deterministic.

    The spatial part (affine + elastic, one resampling) and the blur are batched tensor code:
    MONAI's per-image dictionary transforms resample one image at a time and cost about 100 ms
    per 128x128 image each on a 2-core CPU (``RandAffined``, ``Rand2DElasticd``,
    ``RandGaussianSmoothd``), several times a training step; the intensity part (bias field,
    gamma, contrast, noise) is MONAI's, a few milliseconds per image.
    """

    def __init__(self, seed: int, *, p_affine: float = 0.5, rotate: float = 30.0, scale: tuple[float, float] = (0.7, 1.4),
                 shift: float = 0.1, p_elastic: float = 0.3, elastic_grid: int = 24, elastic_px: float = 3.0,
                 p_blur: float = 0.2, blur_sigma: tuple[float, float] = (0.5, 1.0)):
        from monai import transforms as T  # lazy: MONAI only when the augmentation baseline trains

        self.gen = torch.Generator().manual_seed(int(seed))
        self.p_affine, self.rotate, self.scale, self.shift = p_affine, rotate, scale, shift
        self.p_elastic, self.elastic_grid, self.elastic_px = p_elastic, elastic_grid, elastic_px
        self.p_blur, self.blur_sigma = p_blur, blur_sigma
        self.intensity = T.Compose([
            T.RandBiasField(degree=3, coeff_range=(0.0, 0.3), prob=0.3),
            T.RandAdjustContrast(gamma=(0.7, 1.5), prob=0.3),
            T.RandScaleIntensity(factors=0.25, prob=0.3),
            T.RandGaussianNoise(std=0.05, prob=0.15),
        ])
        self.intensity.set_random_state(seed=int(seed) % (2 ** 32))

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        u = torch.rand(b, 6, generator=self.gen)
        grid = _affine_grid(x.shape, u, self.p_affine, self.rotate, self.scale, self.shift)
        # elastic: a random displacement on a coarse control grid (one point per ``elastic_grid`` px),
        # bicubic-upsampled, magnitude up to ``elastic_px`` pixels
        gh, gw = max(2, h // self.elastic_grid + 1), max(2, w // self.elastic_grid + 1)
        mag = (u[:, 5] < self.p_elastic).float() * torch.rand(b, generator=self.gen) * self.elastic_px
        coarse = torch.randn(b, 2, gh, gw, generator=self.gen) * mag.view(b, 1, 1, 1)
        disp = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
        disp = disp.permute(0, 2, 3, 1) * torch.tensor([2.0 / w, 2.0 / h])
        return grid + disp

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        on = torch.rand(b, generator=self.gen) < self.p_blur
        if not bool(on.any()):
            return x
        lo, hi = self.blur_sigma
        sigma = lo + (hi - lo) * torch.rand(b, generator=self.gen)
        r = int(math.ceil(3 * hi))
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1)) ** 2)
        k = (k / k.sum(1, keepdim=True)).view(b, 1, 1, -1)
        xb = x.permute(1, 0, 2, 3)  # (1, B, H, W): one group per image
        xb = torch.nn.functional.conv2d(torch.nn.functional.pad(xb, (r, r, 0, 0), mode="reflect"), k, groups=b)
        xb = torch.nn.functional.conv2d(torch.nn.functional.pad(xb, (0, 0, r, r), mode="reflect"), k.transpose(2, 3), groups=b)
        return torch.where(on.view(b, 1, 1, 1), xb.permute(1, 0, 2, 3), x)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self._grid(x)
        fn = torch.nn.functional.grid_sample
        x = fn(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        y = fn(y.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).long()
        x = torch.stack([torch.as_tensor(self.intensity(x[i]), dtype=torch.float32).as_subclass(torch.Tensor)
                         for i in range(x.shape[0])])
        return self._blur(x).clamp(0, 1), y


def strong_augment(seed: int) -> StrongAugment:
    """The strong conventional augmentation of the ``real+augmentation`` baseline, seeded."""
    return StrongAugment(seed)
