"""The latent-diffusion pieces of the ``cine`` cascade (:mod:`generators.cine`).

Both LDMs (static anatomy and residual motion) are MONAI ``DiffusionModelUNet``\\ s whose
class-embedding slot holds :class:`PriorNet`, a small MLP of the clinical prior vector
(:func:`prior_vector`: group one-hot, EF/EDV/ESV/slices/spacing over the fixed
:data:`PRIOR_SCALES`, a null flag for classifier-free guidance). Here are the network
(:func:`build_unet`), its training loss (:func:`ldm_loss`, v- or eps-prediction), guided DDIM
sampling (:func:`guided_ddim`), the frame selection of a training cine (:func:`cycle_frames`)
and the temporal low-pass of generated motion (:func:`smooth_cycle`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from generators import device as devices
from generators.diffusion import T_TRAIN, ddim_scheduler

__all__ = ["PRIOR_SCALES", "smooth_cycle", "cycle_frames", "PriorNet", "prior_vector", "ldm_loss", "build_unet",
           "guided_ddim"]

#: fixed scales of the continuous priors (data-independent)
PRIOR_SCALES = {"ef": 100.0, "edv": 250.0, "esv": 250.0, "n_slices": 16.0, "slice_spacing": 10.0}


def smooth_cycle(resid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Cyclic Gaussian low-pass over time of residual trajectories ``(N, T-1, ...)`` (frames 1..T-1;
    frame 0 = ED has residual 0), with ``sigma`` in frames; ED stays exactly the static latent.

    The cardiac cycle is periodic, so the filter is a circular convolution (via the FFT) of the
    whole trajectory including the ED zero; the filtered ED value is then subtracted from every
    frame so the ED frame is unchanged."""
    if sigma <= 0:
        return resid
    n, t1 = resid.shape[:2]
    T = t1 + 1
    traj = torch.cat([torch.zeros_like(resid[:, :1]), resid], 1).float()
    lag = torch.arange(T, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (torch.minimum(lag, T - lag) / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(traj.device)
    shape = (1, -1) + (1,) * (traj.dim() - 2)
    out = torch.fft.irfft(torch.fft.rfft(traj, dim=1) * torch.fft.rfft(kernel, n=T).view(shape), n=T, dim=1)
    return (out - out[:, :1])[:, 1:]


def cycle_frames(n_frames: int, ed: int, frames: int) -> np.ndarray:
    """Indices of ``frames`` frames spread evenly over one cycle starting at ``ed`` (cyclic)."""
    return (int(ed) + np.round(np.linspace(0, n_frames - 1, frames)).astype(int)) % n_frames


class PriorNet(nn.Module):
    """MLP from the prior vector to the UNet's embedding (sits in MONAI's class-embedding slot)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, n_out), nn.SiLU(), nn.Linear(n_out, n_out))

    def forward(self, priors: torch.Tensor) -> torch.Tensor:
        return self.net(priors.float())


def prior_vector(group: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, n_groups: int) -> torch.Tensor:
    """``(B, n_groups + 6)``: group one-hot, scaled EF/EDV/ESV/slices/spacing, null flag; zeros where dropped."""
    onehot = F.one_hot(group.long(), n_groups).float()
    scaled = values.float() / torch.tensor(list(PRIOR_SCALES.values()), device=values.device)
    k = keep.float().view(-1, 1)
    return torch.cat([onehot * k, scaled * k, 1 - k], dim=1)


def ldm_loss(net: nn.Module, scheduler: Any, x0: torch.Tensor, extra: torch.Tensor | None, prior: torch.Tensor,
             weight: torch.Tensor | None, *, prediction: str, per_sample: bool, amp: bool) -> torch.Tensor:
    """Diffusion loss of one batch: noise ``x0`` at uniform timesteps, regress the v (or eps)
    target, MSE over the valid channels (``weight``: 1 for real slices, 0 for the static stack's
    zero padding). ``per_sample``: the mean of per-row losses (each normalised by its own valid
    count) -- the form DP-SGD needs; otherwise one normalisation over the batch."""
    noise = torch.randn_like(x0)
    tt = torch.randint(0, T_TRAIN, (x0.shape[0],), device=x0.device)
    xt = scheduler.add_noise(x0, noise, tt)
    target = scheduler.get_velocity(x0, noise, tt) if prediction == "v_prediction" else noise
    inp = xt if extra is None else torch.cat([xt, extra], 1)
    with devices.autocast(x0.device, amp):
        pred = net(inp, timesteps=tt, class_labels=prior)
    err = (pred.float() - target).pow(2)
    if weight is None:
        return err.mean()
    w = weight.expand_as(err)
    if per_sample:
        return ((err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)).mean()
    return (err * w).sum() / w.sum()


def build_unet(in_ch: int, out_ch: int, n_priors: int, options: Mapping[str, Any]) -> nn.Module:
    """A 2D diffusion UNet of the cascade's options with :class:`PriorNet` as its class embedding."""
    from monai.networks.nets import DiffusionModelUNet  # lazy: MONAI (and torch) only when this network is built

    ch = tuple(int(c) for c in options["channels"])
    unet = DiffusionModelUNet(spatial_dims=2, in_channels=in_ch, out_channels=out_ch, channels=ch,
                              num_res_blocks=int(options["num_res_blocks"]), attention_levels=(False,) * len(ch),
                              norm_num_groups=int(options["norm_groups"]), num_class_embeds=1)
    unet.class_embedding = PriorNet(n_priors, ch[0] * 4)  # MONAI adds it to the timestep embedding
    return unet


def guided_ddim(net: nn.Module, x: torch.Tensor, extra: torch.Tensor | None, prior: torch.Tensor,
                null: torch.Tensor, steps: int, w: float, *, schedule: str, prediction: str) -> torch.Tensor:
    """Trailing-DDIM sampling from noise ``x`` with classifier-free guidance ``u + w (c - u)``
    (``prior`` conditioned, ``null`` dropped; ``w == 1`` runs the conditioned net alone)."""
    sch = ddim_scheduler(schedule, prediction, steps)
    for t in sch.timesteps:
        inp = x if extra is None else torch.cat([x, extra], 1)
        tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        if w == 1.0:
            out = net(inp, timesteps=tt, class_labels=prior)
        else:
            both = net(torch.cat([inp, inp]), timesteps=torch.cat([tt, tt]), class_labels=torch.cat([prior, null]))
            c_out, u_out = both.float().chunk(2)
            out = u_out + w * (c_out - u_out)
        x, _ = sch.step(out.float(), int(t), x)
    return x
