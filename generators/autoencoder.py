"""The shared KL autoencoder of the latent families (``ldm``, ``flow``, ``cine``).

Network: MONAI's :class:`~monai.networks.nets.AutoencoderKL` (Rombach et al. 2022, "High-
Resolution Image Synthesis with Latent Diffusion Models"), sized for a CPU budget: no
attention, one residual block per level, 16/32/64 channels -- two downsamplings turn a
128x128 slice into a 32x32x4 latent. (A 32/64/64-channel network with attention and two
blocks per level trains far too few steps in a CPU preset's budget.)

Loss: L1 reconstruction + an L1 loss on image gradients (keeps edges, which a plain L1
autoencoder blurs) + a tiny KL term (``kl_weight``) that keeps the latent space smooth.

Adversarial term (``adv_weight``, ``fm_weight``; off by default, on in the quick presets of ``ldm``
and ``flow``): a pixel loss makes the decoder output the conditional median of the image, i.e. a
denoised, texture-free slice. As in the first-stage models of Esser et al. 2021 (VQGAN) and
Rombach et al. 2022 (section 3, "perceptual compression"), a patch discriminator
(:mod:`generators.discriminator`, spectral norm, hinge loss) can be trained against the
reconstructions from step ``adv_start`` on, the autoencoder adding ``adv_weight * -D(x_hat)``
plus ``fm_weight *`` discriminator feature matching (Wang et al. 2018) in place of the ImageNet
LPIPS term, for which no weights exist here. On real ACDC scans (BENCHMARKS.md "Generators on
real ACDC (issue 23)"; ``adv_weight=0.1, fm_weight=3``) it moved the decoder's own
reconstructions of holdout slices from 3.7x to 2.0x the real FID floor (recall 0.21 -> 0.54):
the pixel-loss decoder alone is a ceiling below the quality goal of every latent family. (On the
smooth phantom the pixel-loss decoder was enough, and the small flow denoiser sampled with less
coverage on the richer latent: BENCHMARKS.md "Shared autoencoder".)
Under DP the discriminator would be a second, non-private reader of the images, so the term is
refused there (the latent families switch it off and list the change in the report).

Latent scaling: latents are the encoder means multiplied by ``scale = 1 / std`` of the
training latents (Rombach et al. 2022, section 4.3 / appendix), so the diffusion model sees
unit-variance data; an unscaled latent space is a classic cause of "texture soup".

Differential privacy (:mod:`generators.dp`): with a DP plan the autoencoder is trained with
DP-SGD (phase ``autoencoder``), and the latent scale -- a statistic of the private training
latents -- is released by a Gaussian mechanism (phase ``latent_scale``): each privacy unit's
latent RMS, clipped to ``SCALE_BOUND``, is summed and noised with std ``sigma * SCALE_BOUND``.
Both phases go into the run's single ledger, so the denoiser's epsilon is end to end.

Sharing and caching: ``ldm`` and ``flow`` on the same cohort and split use the same
autoencoder, trained once and cached under ``$CMR_AUDIT_CACHE/autoencoders/<key>`` where
the key hashes the training images, the options and the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from audit.core.atomic import atomic_dir
from audit.core.errors import UserError
from audit.core.locks import exclusive
from audit.core.paths import cache_dir
from generators import checkpoint as ckpt
from generators import device as devices
from generators import distributed
from generators.discriminator import PatchDiscriminator, feature_matching, hinge_d_loss
from generators.dp.accountant import Ledger
from generators.dp.release import inverse_rms
from generators.dp.sgd import DPGuaranteeError, PrivateTraining
from generators.training import Trainer, TrainSpec

log = logging.getLogger(__name__)

AE_DEFAULTS: dict[str, Any] = {
    "channels": [16, 32, 64],
    "latent_channels": 4,
    "num_res_blocks": 1,
    "norm_groups": 8,
    "steps": 800,
    "batch_size": 16,
    "lr": 1e-3,
    "kl_weight": 1e-6,
    "grad_weight": 0.5,
    "adv_weight": 0.0,
    "fm_weight": 0.0,
    "adv_start": 200,
    "disc_channels": [16, 32, 64],
    "disc_lr": 2e-4,
}
#: options that only matter when the adversarial term is on (left out of the cache key otherwise)
ADV_KEYS = ("adv_weight", "fm_weight", "adv_start", "disc_channels", "disc_lr")
NAME = "autoencoder-kl"
#: clip bound on a privacy unit's latent RMS for the DP latent scale (trained latents have RMS ~0.8-1)
SCALE_BOUND = 4.0


def _net(options: Mapping[str, Any]) -> torch.nn.Module:
    from monai.networks.nets import AutoencoderKL  # lazy: MONAI (and torch) only when this network is built

    levels = len(options["channels"])
    return AutoencoderKL(
        spatial_dims=2, in_channels=1, out_channels=1, channels=tuple(options["channels"]),
        latent_channels=int(options["latent_channels"]), num_res_blocks=int(options["num_res_blocks"]),
        norm_num_groups=int(options["norm_groups"]), attention_levels=(False,) * levels,
        with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False,
    )


def _grad_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    return F.l1_loss(dy(a), dy(b)) + F.l1_loss(dx(a), dx(b))


def ae_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The autoencoder's full options: ``AE_DEFAULTS`` completed by ``options`` (values as given: the
    cache key hashes them), unknown keys refused. A latent family's resolved ``ae`` option already is
    this (:func:`generators.options.resolve_options`, ``nested_options``), and so is it again: the
    autoencoder resolves when it is built only for callers that give some keys (tests, benchmarks)."""
    unknown = sorted(set(options) - set(AE_DEFAULTS))
    if unknown:
        raise UserError(f"autoencoder: unknown option(s) {unknown}; known: {', '.join(AE_DEFAULTS)}")
    return {**AE_DEFAULTS, **options}


def adversarial(options: Mapping[str, Any]) -> bool:
    """Whether these full autoencoder options (:func:`ae_options`) train a discriminator (module docstring)."""
    return float(options["adv_weight"]) > 0 or float(options["fm_weight"]) > 0


def without_adversarial(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with the adversarial and feature-matching weights at 0 (the pixel-loss autoencoder)."""
    return {**options, "adv_weight": 0.0, "fm_weight": 0.0}


def image_loss(recon: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor,
               options: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The autoencoder objective (module docstring): ``(total, L1, gradient L1, KL)`` in fp32."""
    recon, mu, sigma = recon.float(), mu.float(), sigma.float()
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-8) - 1).sum(dim=(1, 2, 3)).mean()
    l1 = F.l1_loss(recon, x)
    g = _grad_l1(recon, x)
    return l1 + options["grad_weight"] * g + options["kl_weight"] * kl, l1, g, kl


class LatentAutoencoder:
    def __init__(self, options: Mapping[str, Any], shape: tuple[int, int]):
        self.options = ae_options(options)
        self.shape = tuple(shape)
        down = 2 ** (len(self.options["channels"]) - 1)
        if self.shape[0] % down or self.shape[1] % down:
            raise UserError(f"autoencoder: image size {self.shape} must be divisible by {down}")
        self.latent_shape = (int(self.options["latent_channels"]), self.shape[0] // down, self.shape[1] // down)
        self.net = _net(self.options)
        self.scale = 1.0
        self.device = torch.device("cpu")
        #: the DP phases this autoencoder spent (a ledger dict), None when trained without DP
        self.dp_ledger: dict | None = None

    def model_config(self) -> dict[str, Any]:
        return {"options": self.options, "shape": list(self.shape)}

    def to(self, device: str | torch.device) -> "LatentAutoencoder":
        self.device = devices.resolve(device)
        self.net.to(self.device)
        return self

    # ------------------------------------------------------------------ use
    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """``(B,1,H,W)`` in [0,1] (any device) -> scaled latent means ``(B,C,h,w)`` on this
        autoencoder's device, fp32."""
        self.net.eval()
        out = [self.net.encode(images[i:i + batch].to(self.device))[0].float() for i in range(0, len(images), batch)]
        return torch.cat(out) * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return self.net.decode(latents.to(self.device) / self.scale).float().clamp(0, 1)

    def encode_grad(self, images: torch.Tensor) -> torch.Tensor:
        """Differentiable encoding (for white-box scores through the encoder)."""
        return self.net.encode(images)[0] * self.scale

    # ------------------------------------------------------------------ training
    def fit(self, images: np.ndarray, seed: int, checkpoint_root: Path | None = None, resume: bool = False,
            dp: Any = None, device: str | torch.device = "cpu", amp: bool = True) -> list[dict]:
        """Train on ``device``. ``dp``: ``(plan, ledger, subject_ids)`` for DP-SGD (see the module
        docstring); ``amp``: bf16 autocast where native, without DP (:mod:`generators.device`)."""
        o = self.options
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = _net(o)
        self.to(device)
        amp = amp and dp is None
        opt = torch.optim.AdamW(self.net.parameters(), lr=o["lr"], weight_decay=0.0)
        x_all = torch.from_numpy(np.ascontiguousarray(images, np.float32)).unsqueeze(1)
        n, bs = len(x_all), min(int(o["batch_size"]), len(x_all))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(o["steps"])), eta_min=o["lr"] * 0.1)
        private = None
        group = distributed.current()
        with_disc = adversarial(o)
        if with_disc and dp is not None:
            raise UserError("autoencoder: the adversarial / feature-matching terms (adv_weight, fm_weight) train a "
                            "discriminator on the private images outside DP-SGD; set both to 0 for a DP run")
        modules: dict[str, torch.nn.Module] = {"ae": self.net}
        optimizers: dict[str, Any] = {"ae": opt}
        if with_disc:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 1)
                disc = PatchDiscriminator(1, list(o["disc_channels"])).to(self.device)
            optimizers["disc"] = torch.optim.Adam(disc.parameters(), lr=float(o["disc_lr"]), betas=(0.5, 0.999))
            modules["disc"] = disc
        if dp is not None:
            plan, ledger, subject_ids = dp
            private = PrivateTraining(plan, ledger, "autoencoder", subject_ids, seed)
            opt = optimizers["ae"] = private.wrap({"ae": self.net}, {"ae": opt}, "autoencoder")["ae"]
        elif group is not None:
            optimizers = {k: distributed.DataParallelOptimizer(v) for k, v in optimizers.items()}
            opt = optimizers["ae"]

        def step(t: int, rng: np.random.Generator) -> dict[str, float]:
            def train_on(rows) -> dict[str, float]:
                x = x_all[torch.as_tensor(rows)].to(self.device, non_blocking=True)
                with devices.autocast(self.device, amp):
                    recon, mu, sigma = self.net(x)
                loss, l1, g, kl = image_loss(recon, mu, sigma, x, o)
                out = {"loss": loss.item(), "l1": l1.item(), "grad": g.item(), "kl": kl.item()}
                gan_on = with_disc and t >= int(o["adv_start"])
                if gan_on:
                    loss = loss + self._generator_terms(disc, recon, x, o, amp, out)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if gan_on:
                    out["disc"] = self._disc_step(disc, optimizers["disc"], recon.detach(), x, amp)
                return out

            if private is not None:
                losses = private.run_step(t, train_on)
            else:
                losses = distributed.step(rng.choice(n, bs, replace=False), train_on, list(optimizers.values()), group)
            sched.step()
            return losses

        spec = TrainSpec(NAME, self.model_config(), int(o["steps"]), seed, checkpoint_root, 200 if checkpoint_root else 0,
                         None, desc="train autoencoder")
        trainer = Trainer(spec, modules, optimizers, {}, dp=private)
        try:
            history = trainer.fit(step, resume=resume)
        finally:
            if private is not None:
                private.close()
        # latent scale from the training latents (unit variance for the diffusion model)
        self.scale = 1.0
        lat = self.encode(x_all)
        if dp is None:
            self.scale = float(1.0 / lat.std().clamp_min(1e-6))
        else:
            self.scale = inverse_rms(lat, dp[2], plan=dp[0], ledger=dp[1], phase="latent_scale", bound=SCALE_BOUND,
                                     seed=seed, salt=99_991)
        log.info("autoencoder: %d steps, final L1 %.4f, latent scale %.3f", trainer.step,
                 history[-1]["l1"] if history else float("nan"), self.scale)
        return history

    def _generator_terms(self, disc: torch.nn.Module, recon: torch.Tensor, x: torch.Tensor, o: Mapping[str, Any],
                         amp: bool, out: dict[str, float]) -> torch.Tensor:
        """``adv_weight * -D(x_hat) + fm_weight * feature matching`` with the discriminator frozen
        (its parameter gradients from this pass would be thrown away)."""
        disc.requires_grad_(False)
        try:
            with devices.autocast(self.device, amp):
                logits, fake_feats = disc(recon)
                with torch.no_grad():
                    _, real_feats = disc(x)
            adv = -logits.float().mean()
            fm = feature_matching([f.float() for f in fake_feats], [f.float() for f in real_feats])
        finally:
            disc.requires_grad_(True)
        out.update(adv=adv.item(), fm=fm.item())
        return float(o["adv_weight"]) * adv + float(o["fm_weight"]) * fm

    def _disc_step(self, disc: torch.nn.Module, opt: Any, fake: torch.Tensor, real: torch.Tensor, amp: bool) -> float:
        with devices.autocast(self.device, amp):
            real_logits, _ = disc(real)
            fake_logits, _ = disc(fake)
        loss = hinge_d_loss(real_logits.float(), fake_logits.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    # ------------------------------------------------------------------ io
    def save(self, directory: str | Path) -> Path:
        extra: dict[str, Any] = {"scale": self.scale}
        if self.dp_ledger is not None:
            extra["dp_ledger"] = self.dp_ledger
        return ckpt.save(directory, generator=NAME, model_config=self.model_config(), step=0,
                         weights=dict(self.net.state_dict()), extra=extra)

    @classmethod
    def load(cls, directory: str | Path) -> "LatentAutoencoder":
        c = ckpt.load(directory, generator=NAME)
        ae = cls(c.model_config["options"], tuple(c.model_config["shape"]))
        try:
            ae.net.load_state_dict(c.weights)
        except RuntimeError as exc:
            raise UserError(f"{directory}: incompatible autoencoder checkpoint ({str(exc).splitlines()[0]})") from None
        ae.scale = float(c.extra["scale"])
        ae.dp_ledger = c.extra.get("dp_ledger")
        return ae

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """Encode and decode ``(N,H,W)`` images in [0, 1] (latent means, no sampling)."""
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32)).unsqueeze(1)
        out = [self.decode(self.encode(x[i:i + batch])).cpu() for i in range(0, len(x), batch)]
        return torch.cat(out)[:, 0].numpy().astype(np.float32, copy=False)

    def reconstruction_error(self, images: np.ndarray) -> float:
        """Mean absolute error of :meth:`reconstruct` (intensity units of the [0, 1] images)."""
        return float(np.abs(self.reconstruct(images) - np.asarray(images, np.float32)).mean())


def cache_key(images: np.ndarray, options: Mapping[str, Any], seed: int, dp: Mapping[str, Any] | None = None,
              device: str = "cpu", amp: bool = True) -> str:
    """The cache entry of an autoencoder: training images, options (inert adversarial ones left out),
    seed, DP plan, device, and the training precision where it is not the device's old default (bf16
    on a CPU with native bf16; fp32 on CUDA with ``amp`` off), so a network trained in one precision
    never serves a run that would train it in another (CPU fp32 keys stay as they were)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, np.float32).tobytes())
    full = ae_options(options)
    if not adversarial(full):  # inert options do not split the cache (keys from before they existed still hit)
        full = {k: v for k, v in full.items() if k not in ADV_KEYS}
    meta: dict[str, Any] = {"options": full, "seed": seed, "shape": list(images.shape)}
    if dp is not None:
        meta["dp"] = dp  # a DP autoencoder never serves a non-DP run, nor one with another plan
    if device != "cpu":
        meta["device"] = device  # a GPU-trained network differs numerically (CPU keys stay as they were)
    autocast = amp and dp is None  # DP trains in fp32 (generators.device)
    if device == "cpu" and autocast and devices.bf16_native(device):
        meta["precision"] = "bf16"
    elif device != "cpu" and not autocast:
        meta["precision"] = "fp32"
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:24]


def shared_autoencoder(images: np.ndarray, options: Mapping[str, Any], seed: int, *, use_cache: bool = True,
                       dp: Any = None, device: str | torch.device = "cpu", amp: bool = True) -> LatentAutoencoder:
    """The autoencoder for these training images and options: from the cache, or trained and cached.

    The cache entry is written under a temporary name and renamed when complete, by one process
    while concurrent runs wait for it (:mod:`audit.core.locks`); its weights are verified against their
    stored sha256 when loaded, and a corrupt entry is retrained with a warning. With ``dp``
    (``(plan, ledger, subject_ids)``) the autoencoder's phases are spent into ``ledger``, also on
    a cache hit: the cached network was trained on the same private data.
    """
    device = devices.resolve(device)
    key = cache_key(images, options, seed, None if dp is None else {"plan": dp[0].to_dict(), "units": sorted(set(map(str, dp[2])))},
                    device=device.type, amp=amp)
    final = cache_dir("autoencoders") / key
    if not use_cache:
        return _train_shared(images, options, seed, dp, device, amp, final=None)
    ae = _cached(final, dp, device, discard_corrupt=False)
    if ae is not None:
        return ae
    if distributed.current() is not None:
        # under torchrun every rank trains together (a rank waiting for a lock held by rank 0
        # would deadlock the all-reduce): the ranks see the same cache, so they decide alike
        return _train_shared(images, options, seed, dp, device, amp, final=final)
    # one process trains it while concurrent runs (ldm and flow of a tox matrix) wait and reuse it
    with exclusive(final, what="the shared autoencoder"):
        ae = _cached(final, dp, device, discard_corrupt=True)
        return ae if ae is not None else _train_shared(images, options, seed, dp, device, amp, final=final)


def _cached(final: Path, dp: Any, device: torch.device, *, discard_corrupt: bool) -> LatentAutoencoder | None:
    """The cached autoencoder at ``final`` (its weights verified against their stored sha256 by
    :func:`generators.checkpoint.load`), or ``None``; a corrupt entry is discarded with a warning
    (only with ``discard_corrupt``, i.e. under the entry's lock) so that it is retrained."""
    if not (final / "latest").is_file():
        return None
    try:
        ae = LatentAutoencoder.load(final).to(device)
    except UserError as exc:
        if discard_corrupt:
            log.warning("autoencoder cache entry %s unusable (%s); retraining", final.name, exc)
            shutil.rmtree(final, ignore_errors=True)
        return None
    if dp is not None:
        _charge_cached(ae, dp[1], final)
    log.info("autoencoder cache hit (%s)", final.name)
    return ae


def _train_shared(images: np.ndarray, options: Mapping[str, Any], seed: int, dp: Any, device: torch.device, amp: bool,
                  *, final: Path | None) -> LatentAutoencoder:
    """Train the shared autoencoder (with DP when ``dp`` is given) and, with ``final``, cache it."""
    ae = LatentAutoencoder(options, images.shape[1:])
    if dp is not None:
        own = Ledger(dp[1].delta, dp[1].accountant)
        ae.fit(images, seed, dp=(dp[0], own, dp[2]), device=device)
        ae.dp_ledger = own.to_dict()
        _charge_cached(ae, dp[1], "the new autoencoder")
    else:
        ae.fit(images, seed, device=device, amp=amp)
    if final is not None and distributed.is_main():
        with atomic_dir(final) as staging:
            ae.save(staging)
    return ae


def _charge_cached(ae: LatentAutoencoder, ledger: Any, where: Any) -> None:
    """Spend a DP autoencoder's phases into the run's ledger; a non-DP one cannot serve a DP run."""

    if not ae.dp_ledger:
        raise DPGuaranteeError(f"{where}: autoencoder trained without DP cannot be part of a DP run")
    for p in Ledger.from_dict(ae.dp_ledger).phases:
        ledger.spend(p.name, p.noise_multiplier, p.sample_rate, p.steps)
