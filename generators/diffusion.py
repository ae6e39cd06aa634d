"""Mask-conditioned diffusion and flow matching: ``ddpm`` (pixels), ``ldm`` and ``flow`` (latents).

One denoiser for all three: MONAI's :class:`~monai.networks.nets.DiffusionModelUNet` whose
input is the noisy data concatenated with the mask one-hot (resized to the data grid:
area-averaged for latents) and whose class embedding carries vendor x group. Conditions are
dropped to their null values with probability ``p_uncond`` during training so that sampling
can use classifier-free guidance (Ho & Salimans 2022): ``out = u + w (c - u)``.

Objectives and samplers (MONAI schedulers):

* ``ddpm``/``ldm``: a DDPM forward process (Ho et al. 2020) sampled with DDIM (Song et al.
  2021) in ``sample.sampler_steps`` steps. The network predicts ``v = sqrt(a) eps - sqrt(1-a) x0``
  by default (option ``prediction``; Salimans & Ho 2022): with epsilon prediction the first
  DDIM steps recover ``x0 = (x - sqrt(1-a) eps) / sqrt(a)`` with ``sqrt(a) ~ 0.03`` at t = 999,
  so every error in ``eps`` is amplified ~35x, which a network trained for minutes on a CPU
  cannot afford. ``prediction = "epsilon"`` keeps the classic objective. DDIM uses "trailing"
  timesteps (the first step starts at t = T-1 and the last lands exactly on t = 0; Lin et al.
  2024, table 2), which MONAI's scheduler gives with ``steps_offset = T // steps - 1``.
* ``flow``: rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): velocity
  prediction on the straight path between data and noise, sampled by integrating the ODE
  ``dx/dt = -v`` on MONAI's :class:`~monai.networks.schedulers.RFlowScheduler` grid. By default
  with the explicit midpoint rule (``sample.sampler = "midpoint"``; Heun's trapezoidal
  predictor-corrector, as in Karras et al. 2022 alg. 1, with ``"heun"``): two network calls per
  step and a global error O(h^2) instead of Euler's O(h) (``"euler"``, one call). The learned
  field of a briefly trained network is curved enough that few Euler steps stay far from the
  ODE's solution (the samples cover less of the data: BENCHMARKS.md, flow sampler), and the
  midpoint rule never calls the network at t = 0, where training rarely samples it.

SDEdit (Meng et al. 2022; Wong et al., *Can Diffusion Models Bridge the Domain Gap in Cardiac MR
Imaging?*, use it to restyle a reference across vendors):
:meth:`DiffusionFamily.sdedit` noises the reference to ``strength`` of the schedule and
denoises it under the reference's mask and an optional target vendor.

White-box scores: the negative denoising loss of an image at a given timestep, averaged over
noise draws (loss-threshold attack, Matsumoto et al. 2023) -- lower loss = more member-like; and
:meth:`DiffusionFamily.pia_score`, the proximal-initialisation attack (PIA, Kong et al. 2024).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from audit.core.errors import UserError
from generators import device as devices
from generators import distributed
from generators.autoencoder import AE_DEFAULTS, LatentAutoencoder, adversarial, shared_autoencoder, without_adversarial
from generators.conditioning import N_LABELS, check_masks, drop_conditions, one_hot
from generators.data import SliceSet
from generators.dp.plan import PhaseSpec, n_units
from generators.mask2d import MaskConditioned2D

T_TRAIN = 1000
PREDICTIONS = ("v_prediction", "epsilon")
#: ODE solvers of the flow sampler (``sample.sampler``); Heun and midpoint evaluate the network twice per step
FLOW_SOLVERS = ("euler", "heun", "midpoint")


#: the scaled-linear schedule rescaled to zero terminal SNR (option ``schedule``; :func:`zero_snr_schedule`)
ZERO_SNR = "scaled_linear_beta_zero_snr"


def zero_snr_schedule(num_train_timesteps: int, beta_start: float = 1e-4, beta_end: float = 2e-2):
    """``(betas, alphas, alphas_cumprod)`` of the scaled-linear schedule rescaled so the last timestep
    is pure noise (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    Algorithm 1): ``sqrt(alpha_bar)`` is shifted so its last value is 0 and scaled so its first is
    unchanged. With the plain schedule ``sqrt(alpha_bar_T) ~ 0.03``: training never shows the model
    pure noise, yet sampling starts from it, so the low frequencies (overall brightness, large
    structures) of the samples stay close to the training mean. Needs v-prediction (at SNR 0 an
    epsilon target carries no information about the image)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    sqrt_ab = torch.cumprod(1.0 - betas, 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    alphas_cumprod = sqrt_ab**2
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    betas = 1.0 - alphas
    return betas.float(), alphas.float(), alphas_cumprod.float()


def _schedule(name: str) -> str:
    """``name``, registered with MONAI's noise schedules first when it is the zero-SNR one."""
    if name == ZERO_SNR:
        from monai.networks.schedulers import NoiseSchedules  # lazy: MONAI only when a network is built

        if ZERO_SNR not in NoiseSchedules:
            NoiseSchedules.add(ZERO_SNR, "scaled-linear schedule rescaled to zero terminal SNR", zero_snr_schedule)
    return name


def ddim_scheduler(schedule: str, prediction: str, steps: int):
    """MONAI's DDIM scheduler with "trailing" timesteps for ``steps`` steps (module docstring)."""
    from monai.networks.schedulers import DDIMScheduler  # lazy: MONAI (and torch) only when this network is built

    schedule = _schedule(schedule)
    sch = DDIMScheduler(num_train_timesteps=T_TRAIN, schedule=schedule, clip_sample=False, prediction_type=prediction,
                        steps_offset=max(0, T_TRAIN // steps - 1))
    sch.set_timesteps(steps)
    return sch


class Denoiser(nn.Module):
    def __init__(self, data_ch: int, n_classes: int, channels: list[int], num_res_blocks: int, norm_groups: int,
                 attention_last: bool):
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet  # lazy: MONAI (and torch) only when this network is built

        levels = len(channels)
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=data_ch + N_LABELS, out_channels=data_ch, channels=tuple(channels),
            num_res_blocks=num_res_blocks, attention_levels=(False,) * (levels - 1) + (bool(attention_last),),
            norm_num_groups=norm_groups, num_head_channels=channels[-1] // 2 if attention_last else 8,
            num_class_embeds=n_classes,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask_oh: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        if mask_oh.shape[-2:] != x.shape[-2:]:
            mask_oh = F.adaptive_avg_pool2d(mask_oh, x.shape[-2:])
        return self.unet(torch.cat([x, mask_oh], 1), timesteps=t, class_labels=cls)


class DiffusionFamily(MaskConditioned2D):
    """Shared code of ``ddpm``, ``ldm`` and ``flow``; subclasses set ``objective`` and ``latent``."""

    objective: ClassVar[str] = "eps"  # or "velocity"
    latent: ClassVar[bool] = False
    #: sampler steps when the run does not say (DDIM 20; flow overrides with few midpoint steps)
    default_steps: ClassVar[int] = 20
    #: what ``sample.sampler = "auto"`` runs
    default_sampler: ClassVar[str] = "ddim"
    ema_nets: ClassVar[tuple[str, ...]] = ("unet",)
    nested_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {"ae": AE_DEFAULTS}

    def __init__(self) -> None:
        super().__init__()
        self.ae: LatentAutoencoder | None = None

    # ------------------------------------------------------------------ schedulers
    def _train_scheduler(self):
        from monai.networks.schedulers import (  # lazy: MONAI (and torch) only when this network is built
            DDPMScheduler,
            RFlowScheduler,
        )

        if self.objective == "velocity":
            return RFlowScheduler(num_train_timesteps=T_TRAIN, use_discrete_timesteps=False, sample_method="logit-normal",
                                  use_timestep_transform=False)
        return DDPMScheduler(num_train_timesteps=T_TRAIN, schedule=_schedule(self.options["schedule"]),
                             prediction_type=self.options["prediction"])

    def _classes(self, vendor: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        return vendor * (self.vocab.null_group + 1) + group

    # ------------------------------------------------------------------ data space
    def _data_shape(self) -> tuple[int, int, int]:
        if self.latent:
            return self.ae.latent_shape
        return (1, *self.shape)

    def to_data(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0,1] -> the space the denoiser works in (scaled latents, or [-1,1] pixels)."""
        return self.ae.encode(images) if self.latent else images * 2 - 1

    def from_data(self, x: torch.Tensor) -> torch.Tensor:
        return self.ae.decode(x) if self.latent else ((x + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------ build/train
    def build(self, train: bool) -> None:
        o = self.options
        if self.objective != "velocity" and o["prediction"] not in PREDICTIONS:
            raise UserError(f"generator '{self.name}': option prediction must be one of {', '.join(PREDICTIONS)}, "
                            f"got {o['prediction']!r}")
        n_classes = (self.vocab.null_vendor + 1) * (self.vocab.null_group + 1)
        data_ch = int(o["ae"]["latent_channels"]) if self.latent else 1
        self.nets = nn.ModuleDict({"unet": Denoiser(data_ch, n_classes, list(o["channels"]), int(o["num_res_blocks"]),
                                                    int(o["norm_groups"]), bool(o["attention"]))})
        self.scheduler = self._train_scheduler()
        if train:
            self.optimizers = {"unet": torch.optim.AdamW(self.nets["unet"].parameters(), lr=o["lr"], weight_decay=0.0)}

    @classmethod
    def check_options(cls, given: Mapping[str, Any]) -> None:
        # the default itself is what a resolved config (config.json) holds: only another value is refused
        if given.get("guidance_scale", cls.defaults.get("guidance_scale")) != cls.defaults.get("guidance_scale"):
            raise UserError(f"generator '{cls.name}': set the guidance with sample.guidance_scale (--set "
                            f"sample.guidance_scale=W); generator_options.guidance_scale would be overridden by it")
        super().check_options(given)
        prediction = given.get("prediction", cls.defaults.get("prediction"))
        if cls.objective != "velocity" and prediction not in PREDICTIONS:
            raise UserError(f"generator '{cls.name}': option prediction must be one of {', '.join(PREDICTIONS)}, "
                            f"got {prediction!r}")
        if given.get("schedule", cls.defaults.get("schedule")) == ZERO_SNR and prediction != "v_prediction":
            raise UserError(f"generator '{cls.name}': schedule {ZERO_SNR} needs prediction v_prediction (at zero SNR "
                            f"an epsilon target says nothing about the image), got {prediction!r}")

    def fit(self, train: SliceSet, config: Any, context=None) -> None:
        given = getattr(config, "generator_options", None) or {}
        self.check_options(given)
        self.dp_plan = self.dp_ledger = None
        if self.latent:
            self._set_options(given)
            dp = None
            if config.dp.enabled:
                train.require_masks(self.name)
                self.dp_adjust_options()  # before the autoencoder trains; _fit records the change
                self._start_dp(train, config)  # one plan over autoencoder, latent scale and denoiser
                dp = (self.dp_plan, self.dp_ledger, train.subject_ids)
            # the autoencoder sees every training slice, annotated or not: it needs no labels
            self.ae = shared_autoencoder(train.images, self.options["ae"], int(config.seed), dp=dp,
                                         device=devices.resolve(getattr(config, "device", "cpu")),
                                         amp=config.train.amp)
        self._fit(train, config, context)

    def dp_phases(self, train: SliceSet, config: Any) -> list:
        phases = super().dp_phases(train, config)
        if not self.latent:
            return phases
        ae = self.options["ae"]
        return [PhaseSpec("autoencoder", steps=int(ae["steps"]), rows=int(ae["batch_size"]),
                          n_units=n_units(train.subject_ids, str(config.dp.unit))),
                PhaseSpec("latent_scale", steps=1, sample_rate=1.0)] + phases

    def dp_adjust_options(self) -> list[str]:
        if self.latent and adversarial(self.options["ae"]):
            self.options["ae"] = without_adversarial(self.options["ae"])
            return ["ae.adv_weight=0, ae.fm_weight=0 (autoencoder): its adversarial term trains a discriminator on the "
                    "private images outside DP-SGD, so the DP autoencoder is trained on the pixel losses only"]
        return []

    def dp_notes(self) -> list[str]:
        if self.latent:
            return ["the autoencoder and the latent scale were trained on the private split with DP, in the same "
                    "ledger as the denoiser (end-to-end epsilon)"]
        return []

    @torch.no_grad()
    def training_inputs(self, images: torch.Tensor) -> torch.Tensor | None:
        """Latents of the training slices, encoded once: the autoencoder is frozen while the
        denoiser trains and encodes to the posterior mean, so per-batch encoding repeated the
        same computation every step."""
        return self.to_data(images) if self.latent else None

    def train_step(self, batch, step, rng):
        o = self.options
        x0 = batch["data"] if "data" in batch else self.to_data(batch["image"])
        mask_oh, vendor, group = drop_conditions(one_hot(batch["mask"]), batch["vendor"], batch["group"], self.vocab,
                                                 o["p_uncond"])
        noise = torch.randn_like(x0)
        if self.objective == "velocity":
            t = self.scheduler.sample_timesteps(x0)
        else:
            t = torch.randint(0, T_TRAIN, (x0.shape[0],), device=x0.device)
        xt, target = self._noised(x0, noise, t)
        pred = self.nets["unet"](xt, t, mask_oh, self._classes(vendor, group))
        loss = F.mse_loss(pred, target)
        opt = self.optimizers["unet"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.dp_plan is None:  # DP-SGD clips per sample instead
            distributed.synchronize(opt)  # under torchrun: clip the rank-averaged gradient
            torch.nn.utils.clip_grad_norm_(self.nets["unet"].parameters(), 1.0)
        opt.step()
        return {"loss": loss.item()}

    def _noised(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_t`` and the regression target at timesteps ``t`` (the training objective, also the score's)."""
        # fp32 in: MONAI's add_noise casts the scheduler's alphas to its input's dtype, for good
        x0, noise = x0.float(), noise.float()
        xt = self.scheduler.add_noise(x0, noise, t)
        if self.objective == "velocity":
            return xt, x0 - noise
        if self.options["prediction"] == "v_prediction":
            return xt, self.scheduler.get_velocity(x0, noise, t)
        return xt, noise

    # ------------------------------------------------------------------ sampling
    def _guided(self, x, t, mask_oh, cls, null_cls, w: float) -> torch.Tensor:
        unet = self.nets["unet"]
        tt = self._timesteps(x.shape[0], t)
        if w == 1.0:
            return unet(x, tt, mask_oh, cls)
        both = unet(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([mask_oh, torch.zeros_like(mask_oh)]), torch.cat([cls, null_cls]))
        c, u = both.chunk(2)
        return u + w * (c - u)

    def _denoise(self, x, mask_oh, cls, steps: int, w: float, start: float = 1.0) -> torch.Tensor:
        """Run the sampler from fraction ``start`` of the schedule (1 = pure noise) to 0."""
        null_cls = torch.full_like(cls, self._classes(torch.tensor(self.vocab.null_vendor), torch.tensor(self.vocab.null_group)).item())
        solver = self.sampler_name()  # also refuses a sampler this family does not have
        if self.objective == "velocity":
            from monai.networks.schedulers import (
                RFlowScheduler,  # lazy: MONAI (and torch) only when this network is built
            )

            sch = RFlowScheduler(num_train_timesteps=T_TRAIN, use_discrete_timesteps=False, use_timestep_transform=False)
            sch.set_timesteps(num_inference_steps=steps)
            ts = [float(t) for t in sch.timesteps if float(t) <= start * T_TRAIN + 1e-6]
            if not ts or ts[0] < start * T_TRAIN - 1e-6:
                ts = [start * T_TRAIN] + ts
            nxt = ts[1:] + [0.0]
            for t, tn in zip(ts, nxt):
                h = (t - tn) / T_TRAIN
                v = self._guided(x, t, mask_oh, cls, null_cls, w)
                if solver == "heun":
                    v = 0.5 * (v + self._guided(x + h * v, tn, mask_oh, cls, null_cls, w))
                elif solver == "midpoint":
                    v = self._guided(x + 0.5 * h * v, 0.5 * (t + tn), mask_oh, cls, null_cls, w)
                x = x + h * v
            return x
        sch = ddim_scheduler(self.options["schedule"], self.options["prediction"], steps)
        for t in sch.timesteps:
            if int(t) > start * (T_TRAIN - 1) + 1e-6:
                continue
            eps = self._guided(x, int(t), mask_oh, cls, null_cls, w)
            x, _ = sch.step(eps, int(t), x)
        return x

    def generate(self, mask_oh, vendor, group, generator):
        # deterministic samplers (DDIM with eta = 0, flow ODE solvers): the only randomness is the start noise
        x = self._randn((mask_oh.shape[0], *self._data_shape()), generator)
        steps, guidance = self.sampling_settings()
        x = self._denoise(x, mask_oh, self._classes(vendor, group), steps, guidance)
        return self.from_data(x)

    def sampler_name(self) -> str:
        """The sampler for the run's ``sample.sampler``: ``"auto"`` is the family's
        :attr:`default_sampler` (DDIM; flow: the midpoint rule); flow takes any of
        :data:`FLOW_SOLVERS`."""
        name = str(self.sampling.get("sampler") or "auto")
        allowed = FLOW_SOLVERS if self.objective == "velocity" else ("ddim",)
        if name == "auto":
            return self.default_sampler
        if name not in allowed:
            raise UserError(f"generator '{self.name}' samples with {' / '.join(allowed)}: sample.sampler={name!r} does not "
                            f"apply (use auto or one of those)")
        return name

    def sampling_settings(self) -> tuple[int, float]:
        """Sampler steps and guidance scale: the run's ``sample.*`` settings, else the family default
        (``default_steps``; option ``guidance_scale``, 2.0 like ``sample.guidance_scale``)."""
        steps = self.sampling.get("steps") or self.default_steps
        guidance = self.sampling.get("guidance")
        return int(steps), float(self.options["guidance_scale"] if guidance is None else guidance)

    @torch.no_grad()
    def sdedit(self, reference: np.ndarray, masks: np.ndarray | None, *, strength: float, vendor=None, group=None,
               seed: int = 0, batch_size: int = 32) -> np.ndarray:
        """Restyle ``reference`` images (SDEdit, Meng et al. 2022, ICLR): noise to ``strength`` in
        (0, 1], denoise under their masks. ``masks=None`` restyles without labels (test-time
        adaptation of scans nobody has segmented): the mask condition is the null mask of
        classifier-free guidance, so only ``vendor`` / ``group`` steer and the structure is what
        survives the partial noising."""
        if not 0 < strength <= 1:
            raise UserError(f"SDEdit strength must be in (0, 1], got {strength}")
        if self.nets is None:
            raise UserError(f"generator '{self.name}' has not been fitted or loaded")
        if masks is not None:
            check_masks(masks, self.shape, self.name)
        v, g = self.vocab.encode(vendor, group, len(reference))
        gen = torch.Generator().manual_seed(int(seed))
        self.nets.eval()
        out = np.empty_like(reference, dtype=np.float32)
        steps, guidance = self.sampling_settings()
        for lo in range(0, len(reference), batch_size):
            hi = min(lo + batch_size, len(reference))
            x0 = self.to_data(self._tensor(reference[lo:hi], torch.float32).unsqueeze(1))
            noise = self._randn(x0.shape, gen)
            if self.objective == "velocity":
                xt = (1 - strength) * x0 + strength * noise
            else:
                xt = self.scheduler.add_noise(x0, noise, self._timesteps(x0.shape[0], int(round(strength * (T_TRAIN - 1)))))
            cls = self._classes(v[lo:hi], g[lo:hi]).to(self.device)
            mask_oh = (torch.zeros((hi - lo, N_LABELS, *self.shape), device=self.device) if masks is None
                       else one_hot(self._tensor(masks[lo:hi])))
            with devices.autocast(self.device, self.amp):
                x = self.from_data(self._denoise(xt, mask_oh, cls, steps, guidance, start=strength))
            out[lo:hi] = x.float()[:, 0].cpu().numpy()
        return out

    # ------------------------------------------------------------------ white-box score
    @torch.no_grad()
    def score(self, images: np.ndarray, masks: np.ndarray | None = None, *, seed: int = 0, timestep: int = 100,
              repeats: int = 4, vendor=None, group=None) -> np.ndarray:
        """Negative denoising loss at ``timestep`` (0..999), averaged over ``repeats`` noise draws."""
        gen = torch.Generator().manual_seed(int(seed))
        out = np.zeros(len(images))
        for lo, hi, x0, m, cls in self._score_batches(images, masks, vendor, group):
            t = self._timesteps(hi - lo, timestep)
            total = torch.zeros(hi - lo, device=self.device)
            for _ in range(repeats):
                noise = self._randn(x0.shape, gen)
                xt, target = self._noised(x0, noise, t)
                pred = self.nets["unet"](xt, t, m, cls)
                total += ((pred - target) ** 2).mean(dim=(1, 2, 3))
            out[lo:hi] = -(total / repeats).cpu().numpy()
        return out

    def _score_batches(self, images: np.ndarray, masks: np.ndarray | None, vendor, group):
        """``(lo, hi, x0, mask one-hot, class)`` per batch of 64 for the white-box scores (no mask =
        the null mask, i.e. unconditional)."""
        if self.nets is None:
            raise UserError(f"generator '{self.name}' has not been fitted or loaded")
        if masks is not None:
            check_masks(masks, self.shape, self.name)
        v, g = self.vocab.encode(vendor, group, len(images))
        self.nets.eval()
        for lo in range(0, len(images), 64):
            hi = min(lo + 64, len(images))
            x0 = self.to_data(self._tensor(images[lo:hi], torch.float32).unsqueeze(1))
            m = (torch.zeros((hi - lo, N_LABELS, *self.shape), device=self.device) if masks is None
                 else one_hot(self._tensor(masks[lo:hi])))
            yield lo, hi, x0, m, self._classes(v[lo:hi], g[lo:hi]).to(self.device)

    def _timesteps(self, n: int, value: float) -> torch.Tensor:
        """``n`` copies of timestep ``value`` in the dtype the objective uses (flow: continuous)."""
        if self.objective == "velocity":
            return torch.full((n,), float(value), device=self.device)
        return torch.full((n,), int(value), dtype=torch.long, device=self.device)

    def _noise_estimate(self, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise the network's output implies at ``x`` (epsilon; for v, ``sqrt(a) v + sqrt(1-a) x``;
        for flow velocity ``v = x0 - n``, ``n = x - (1 - t/T) v``)."""
        if self.objective == "velocity":
            tau = (t.float() / T_TRAIN).view(-1, 1, 1, 1)
            return x - (1 - tau) * out
        if self.options["prediction"] == "epsilon":
            return out
        a = self.scheduler.alphas_cumprod.to(out.device)[t].view(-1, 1, 1, 1).to(out.dtype)
        return a.sqrt() * out + (1 - a).sqrt() * x

    @torch.no_grad()
    def pia_score(self, images: np.ndarray, masks: np.ndarray | None = None, *, seed: int = 0, timestep: int = 100,
                  p: float = 4.0, vendor=None, group=None, **_: Any) -> np.ndarray:
        """PIA, proximal initialisation (Kong et al. 2024, "An Efficient Membership Inference Attack for the
        Diffusion Model by Proximal Initialization", arXiv 2305.18355): the model's own noise estimate at
        t = 0 replaces the random noise, ``x_t = q(x_0, t; n_0)`` with ``n_0 = n_theta(x_0, 0)``, and the
        score is minus the l_p distance (mean over elements of ``|.|^p``, p = 4 by default) between the noise
        estimate at ``t`` and ``n_0``. A memorised image keeps a consistent noise estimate along its own
        trajectory. Deterministic: two network calls per image, no noise draws (``seed`` unused)."""
        out = np.zeros(len(images))
        for lo, hi, x0, m, cls in self._score_batches(images, masks, vendor, group):
            unet = self.nets["unet"]
            t0, tt = self._timesteps(hi - lo, 0), self._timesteps(hi - lo, timestep)
            n0 = self._noise_estimate(unet(x0, t0, m, cls), x0, t0)
            xt = self.scheduler.add_noise(x0, n0, tt)
            nt = self._noise_estimate(unet(xt, tt, m, cls), xt, tt)
            out[lo:hi] = -((nt - n0).abs() ** p).mean(dim=(1, 2, 3)).cpu().numpy()
        return out

    def _from_model_config(self, mc: Mapping[str, Any]) -> None:
        options = dict(mc["options"])
        if self.objective != "velocity":
            # checkpoints written before the option existed were trained on epsilon
            options.setdefault("prediction", "epsilon")
        super()._from_model_config({**mc, "options": options})

    def to(self, device):
        super().to(device)
        if self.ae is not None:
            self.ae.to(self.device)
        return self

    # ------------------------------------------------------------------ io (the autoencoder travels along)
    def save(self, directory) -> None:
        super().save(directory)
        if self.latent:
            self.ae.save(Path(directory) / "autoencoder")

    @classmethod
    def load(cls, directory):
        g = super().load(directory)
        if cls.latent:
            g.ae = LatentAutoencoder.load(Path(directory) / "autoencoder")
        return g


_COMMON: dict[str, Any] = {
    "num_res_blocks": 1,
    "norm_groups": 16,
    "attention": False,
    "lr": 2e-4,
    "p_uncond": 0.1,
    "schedule": "scaled_linear_beta",
    # the guidance of sample() calls that give none; audit runs always pass sample.guidance_scale
    # (default 2.0, the same), and fit() refuses another value of this option in a run's generator_options
    "guidance_scale": 2.0,
}


class DDPMGenerator(DiffusionFamily):
    name = "ddpm"
    family = "diffusion"
    description = "pixel-space mask-conditioned diffusion (DDPM training, DDIM sampling, classifier-free guidance)"
    objective = "eps"
    latent = False
    defaults: ClassVar[Mapping[str, Any]] = {**_COMMON, "prediction": "v_prediction", "channels": [16, 32, 64],
                                             "norm_groups": 8, "ae": {}}
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"generator_options.channels": [16, 16], "generator_options.norm_groups": 8},
        # 96 px and 750 steps: the pixel-space denoiser trains within the quick preset's 15-minute CPU
        # budget. Sampling: 5 trailing DDIM steps without guidance; guidance pushes this small model's
        # samples off the real manifold (it follows the mask without it), and 20 steps with guidance
        # are far slower and further from the real floor in FID (BENCHMARKS.md "Generators at the
        # quick preset")
        "quick": {"data.size": 96, "data.target_spacing": 2.0, "train.steps": 750, "train.batch_size": 16,
                  "sample.sampler_steps": 5, "sample.guidance_scale": 1.0},
        "full": {"train.steps": 3000, "train.batch_size": 64, "generator_options.channels": [64, 128, 256],
                 "generator_options.attention": True, "generator_options.norm_groups": 32, "sample.sampler_steps": 50},
    }


class LDMGenerator(DiffusionFamily):
    name = "ldm"
    family = "diffusion"
    description = "autoencoder-KL + mask-conditioned latent diffusion (DDIM sampling, classifier-free guidance)"
    objective = "eps"
    latent = True
    defaults: ClassVar[Mapping[str, Any]] = {**_COMMON, "prediction": "v_prediction", "channels": [64, 128, 128],
                                             "norm_groups": 32, "ae": {}}
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": {"generator_options.channels": [16, 16], "generator_options.norm_groups": 8,
                  "generator_options.ae": {"channels": [8, 8], "norm_groups": 4, "steps": 10, "batch_size": 8}},
        # Sized on real ACDC scans (BENCHMARKS.md "Generators on real ACDC (issue 23)"): the
        # pixel-loss autoencoder alone sat at 3.7x the real FID floor (recall 0.21), so no denoiser
        # could reach 3x; the adversarial + feature-matching decoder (a patch discriminator trained
        # here) lifts that ceiling to 2.0x (recall 0.54). 2,400 denoiser steps (bf16 on CPUs that
        # have it) and 25 DDIM steps without guidance gave the lowest FID of the sweep (2.8x vs 4.3x
        # with guidance 2 at 10 steps); guidance raised no recall and cost precision.
        "quick": {"train.steps": 2400, "train.batch_size": 32, "sample.sampler_steps": 25, "sample.guidance_scale": 1.0,
                  "generator_options.channels": [32, 64, 64],
                  "generator_options.norm_groups": 16,
                  "generator_options.ae": {"channels": [8, 16, 32], "norm_groups": 8, "steps": 600,
                                           "adv_weight": 0.1, "fm_weight": 3.0}},
        # one H100/H200: 2000 autoencoder + 2000 denoiser steps keep the full preset's whole run near
        # its 8-minute size (step times: BENCHMARKS.md "GPU" and "Differential privacy")
        "full": {"train.steps": 2000, "train.batch_size": 256, "generator_options.channels": [128, 256, 256],
                 "generator_options.norm_groups": 32, "generator_options.attention": True, "sample.sampler_steps": 50,
                 "generator_options.ae": {"channels": [32, 64, 128], "norm_groups": 16, "steps": 2000, "batch_size": 64}},
    }


class FlowGenerator(DiffusionFamily):
    name = "flow"
    family = "flow"
    description = "rectified flow / flow matching in the LDM latent space, few-step second-order (midpoint) ODE sampling"
    objective = "velocity"
    latent = True
    # The midpoint rule at 6 steps (12 network calls) integrates the learned field to its limit at
    # the quick preset: more midpoint steps do not raise the recall in judge features, fewer lower
    # it, and Euler stays well below it even with more network calls (BENCHMARKS.md, "Flow sampler:
    # a second-order ODE solver").
    default_steps = 6
    default_sampler = "midpoint"
    defaults: ClassVar[Mapping[str, Any]] = {**_COMMON, "channels": [64, 128, 128], "norm_groups": 32, "ae": {}}
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # the ldm presets with the flow sampler's step counts; guidance stays the run default (2.0) as
        # the flow sampler was sized with it
        name: {**{k: v for k, v in p.items() if k != "sample.guidance_scale"},
               "sample.sampler_steps": {"smoke": 2, "quick": 6}.get(name, 12)} for name, p in LDMGenerator.presets.items()
    }
