"""Shared machinery of the trainable 2D mask-conditioned families (gan, vae, ddpm, ldm, flow).

A family subclasses :class:`MaskConditioned2D` and provides

* ``defaults``: its model options (overridable with ``--set generator_options.KEY=VALUE``;
  unknown keys are an error; resolved once when the generator is built, see
  :mod:`generators.options`),
* ``build()``: create ``self.nets`` (``torch.nn.ModuleDict``) and, for training,
  ``self.optimizers`` and which nets get an EMA (``ema_nets``),
* ``train_step(batch, step, rng)``: one optimisation step on a batch, returning losses,
* ``generate(mask_oh, vendor, group, generator)``: images ``(B,1,H,W)`` in [0, 1] from the
  sampling weights (EMA where there is one),
* optionally ``score_batch`` for the white-box attacks.

This class owns what is the same for all of them: option validation, vocabularies, torch
threads, seeded batching through :class:`~generators.training.Trainer` (exact resume),
batched seeded sampling, and ``config.json`` + ``safetensors`` save/load.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from audit.core.cpus import usable_cores
from audit.core.errors import UserError
from audit.core.logs import progress_disabled
from generators import checkpoint as ckpt
from generators import device as devices
from generators import distributed
from generators.base import FitContext, Generator
from generators.conditioning import Vocab, check_masks, one_hot
from generators.data import SliceSet
from generators.dp.plan import DPPlan, PhaseSpec, make_plan, n_units
from generators.dp.sgd import PrivateTraining
from generators.dp.summary import summarise
from generators.options import check_options
from generators.sampleset import SampleSet
from generators.training import EMA, Trainer, TrainSpec

log = logging.getLogger(__name__)


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads (0 = every core this process may run on,
    :func:`audit.core.cpus.usable_cores`); no torch.compile on CPU (not worth it for short runs)."""

    torch.set_num_threads(n if n > 0 else usable_cores())


class MaskConditioned2D(Generator):
    #: nets whose EMA is used for sampling
    ema_nets: ClassVar[tuple[str, ...]] = ()
    #: train on every slice (semi-supervised) instead of annotated slices only
    uses_unlabelled: ClassVar[bool] = False
    #: noisy gradient releases per DP step (one per private optimiser; see generators.dp.plan)
    dp_releases: ClassVar[int] = 1

    def __init__(self) -> None:
        self.options: dict[str, Any] = self.resolve_options({})
        self.vocab: Vocab | None = None
        self.shape: tuple[int, int] | None = None
        self.spacing: np.ndarray | None = None
        self.nets: torch.nn.ModuleDict | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.emas: dict[str, EMA] = {}
        self.steps_done = 0
        #: per-call sampler settings (``steps``, ``guidance``) for families that have a sampler
        self.sampling: dict[str, Any] = {}
        #: DP training: the calibrated plan, the ledger of privacy spent, and the summary that
        #: goes into the checkpoint config and ``results.json`` (None = trained without DP)
        self.dp_plan = None
        self.dp_ledger = None
        self.dp_summary: dict[str, Any] | None = None
        self._private = None  # the PrivateTraining of a running DP fit
        #: where the nets live and compute (:mod:`generators.device`); ``to`` moves them
        self.device = torch.device("cpu")
        #: bf16 autocast where native (set from ``train.amp``; off under DP; :mod:`generators.device`)
        self.amp = True

    # ------------------------------------------------------------------ config
    @classmethod
    def check_options(cls, given: Mapping[str, Any]) -> None:
        check_options(cls.name, given, cls.defaults, nested=cls.nested_options)

    def _set_options(self, given: Mapping[str, Any]) -> None:
        """Build with ``given`` options, resolved once (:meth:`~generators.base.Generator.resolve_options`)."""
        self.options = self.resolve_options(given)

    def model_config(self) -> dict[str, Any]:
        assert self.vocab is not None and self.shape is not None and self.spacing is not None
        mc = {"options": self.options, "vocab": self.vocab.to_dict(), "shape": list(self.shape),
              "spacing": [float(s) for s in self.spacing]}
        if self.dp_plan is not None:
            mc["dp"] = self.dp_plan.to_dict()
        return mc

    def _from_model_config(self, mc: Mapping[str, Any]) -> None:
        if mc.get("dp") is not None:
            self.dp_plan = DPPlan.from_dict(mc["dp"])
        self._set_options(mc["options"])
        self.vocab = Vocab.from_dict(mc["vocab"])
        self.shape = tuple(mc["shape"])  # type: ignore[assignment]
        self.spacing = np.asarray(mc["spacing"], np.float32)

    # ------------------------------------------------------------------ family hooks
    @abc.abstractmethod
    def build(self, train: bool) -> None:
        """Create ``self.nets`` (and, if ``train``, ``self.optimizers``)."""

    def dp_phases(self, train: SliceSet, config: Any) -> list:
        """The DP mechanisms this family applies to ``train`` (:class:`generators.dp.plan.PhaseSpec`);
        latent families add their autoencoder's phases in front."""

        units = train.subject_ids if self.uses_unlabelled else train.subject_ids[train.labelled]
        return [PhaseSpec("train", steps=int(config.train.steps), rows=int(config.train.batch_size),
                          releases=self.dp_releases, n_units=n_units(units, str(config.dp.unit)))]

    def dp_adjust_options(self) -> list[str]:
        """Change options that DP-SGD cannot train (e.g. spectral norm); returns what was changed."""
        return []

    def _optimizer_modules(self) -> dict[str, torch.nn.Module]:
        """The network each optimiser trains (the optimiser's name, else all nets)."""
        return {name: self.nets[name] if name in self.nets else self.nets for name in self.optimizers}

    def _start_dp(self, train: SliceSet, config: Any) -> None:
        """Plan and calibrate DP for the whole fit (all phases) before anything is trained."""

        self.dp_plan = make_plan(config.dp, train.subject_ids, self.dp_phases(train, config))
        self.dp_ledger = self.dp_plan.ledger()

    def training_inputs(self, images: torch.Tensor) -> torch.Tensor | None:
        """A fixed transform of every training image computed once before training, handed to
        :meth:`train_step` as ``batch["data"]`` (e.g. frozen-encoder latents); ``None``: none."""
        return None

    @abc.abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor], step: int, rng: np.random.Generator) -> dict[str, float]:
        """One optimisation step; returns the losses to log."""

    @abc.abstractmethod
    def generate(self, mask_oh: torch.Tensor, vendor: torch.Tensor, group: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images ``(B,1,H,W)`` in [0, 1] for the given conditions."""

    # ------------------------------------------------------------------ training
    def fit(self, train: SliceSet, config: Any, context: FitContext | None = None) -> None:
        self.dp_plan = self.dp_ledger = None
        self._fit(train, config, context)

    def _fit(self, train: SliceSet, config: Any, context: FitContext | None = None) -> None:
        """The fit itself; families that must plan DP first (the latent ones, before their
        autoencoder) set ``dp_plan`` and call this directly."""
        context = context or FitContext()
        if not self.uses_unlabelled:
            train.require_masks(self.name)
        self._set_options(getattr(config, "generator_options", {}) or {})
        dp_on = bool(config.dp.enabled)
        adjusted: list[str] = []
        if dp_on:
            adjusted = self.dp_adjust_options()
            if self.dp_plan is None:
                self._start_dp(train, config)
        if not self.uses_unlabelled:
            train = train.subset(np.flatnonzero(train.labelled))
        tcfg = config.train
        set_threads(tcfg.num_threads)
        self.device = devices.resolve(getattr(config, "device", "cpu"))
        self.amp = bool(getattr(tcfg, "amp", True)) and not dp_on
        self.vocab = Vocab.from_data(train.vendor, train.group)
        self.shape, self.spacing = train.shape, train.spacing
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(config.seed))  # weight initialisation depends on the run seed only
            self.build(train=True)
        self.nets.to(self.device)  # in place: the optimisers built above keep their parameters
        images = torch.from_numpy(np.ascontiguousarray(train.images)).unsqueeze(1)
        masks = torch.from_numpy(np.ascontiguousarray(train.masks))
        labelled = torch.from_numpy(train.labelled.astype(bool))
        vendor, group = self.vocab.encode(train.vendor, train.group, len(train))
        data = self.training_inputs(images)
        n, bs = len(train), min(tcfg.batch_size, len(train))
        for name in self.ema_nets:
            self.emas[name] = EMA(self.nets[name], tcfg.ema_decay, tcfg.ema_warmup_steps)

        ranks = distributed.current()
        private = None
        if dp_on:
            private = PrivateTraining(self.dp_plan, self.dp_ledger, "train", train.subject_ids, int(config.seed))
            self.optimizers = private.wrap(self._optimizer_modules(), self.optimizers, f"generator '{self.name}'")
        self._private = private
        if ranks is not None:
            self.optimizers = {k: distributed.DataParallelOptimizer(o) for k, o in self.optimizers.items()}

        def step(t: int, rng: np.random.Generator) -> dict[str, float]:
            def train_on(rows) -> dict[str, float]:
                idx = torch.as_tensor(rows)
                batch = devices.to({"image": images[idx], "mask": masks[idx], "labelled": labelled[idx],
                                    "vendor": vendor[idx], "group": group[idx]}, self.device)
                if data is not None:
                    batch["data"] = data[idx.to(data.device)]
                with devices.autocast(self.device, self.amp):
                    return self.train_step(batch, t, rng)

            if private is not None:
                return private.run_step(t, train_on)
            return distributed.step(rng.choice(n, bs, replace=False), train_on, self.optimizers.values(), ranks)

        spec = TrainSpec(self.name, self.model_config(), tcfg.steps, int(config.seed), context.checkpoint_root,
                         tcfg.checkpoint_every, context.losses_path, desc=f"train {self.name}",
                         upgrade=self.upgrade_model_config, keep_checkpoints=getattr(tcfg, "keep_checkpoints", 2))
        trainer = Trainer(spec, dict(self.nets.items()), self.optimizers, self.emas, dp=private)
        try:
            trainer.fit(step, resume=context.resume)
        finally:
            if private is not None:
                private.close()
            self._private = None
        self.steps_done = trainer.step
        if ranks is not None:
            self.optimizers = {k: o.optimizer for k, o in self.optimizers.items()}
        self._use_ema()
        if private is not None:
            self.dp_summary = summarise(self.dp_plan, self.dp_ledger, adjusted=adjusted, family=self.family,
                                        notes=self.dp_notes())

    @contextlib.contextmanager
    def frozen(self, module: torch.nn.Module):
        """No parameter gradients for ``module`` inside the block (gradients still flow through
        it); under DP its per-sample hooks are paused too, so another network's backward pass
        through it records nothing."""
        gsm = self._private.gsm_of(module) if self._private is not None else None
        module.requires_grad_(False)
        if gsm is not None:
            gsm.disable_hooks()
        try:
            yield
        finally:
            module.requires_grad_(True)
            if gsm is not None:
                gsm.enable_hooks()

    def dp_notes(self) -> list[str]:
        """What the report must say about this family's DP (which parts touch private data)."""
        return []

    def to(self, device: str | torch.device) -> "MaskConditioned2D":
        """Move the networks (e.g. after :meth:`load`) to ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
        self.device = devices.resolve(device)
        if self.nets is not None:
            self.nets.to(self.device)
        return self

    def _tensor(self, a: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A NumPy batch as a tensor on this generator's device."""
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.to(self.device, dtype) if dtype is not None else t.to(self.device)

    def _randn(self, shape, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise on the device: from the seeded CPU ``generator`` when given (sampling:
        a seed means the same noise on every device), else from the device's own generator."""
        if generator is not None:
            return torch.randn(shape, generator=generator).to(self.device)
        return torch.randn(shape, device=self.device)

    def _use_ema(self) -> None:
        for name, ema in self.emas.items():
            ema.copy_to(self.nets[name])

    # ------------------------------------------------------------------ sampling
    def _prepare_conditions(self, n: int | None, conditions: Mapping[str, Any] | None) -> tuple[np.ndarray, Any, Any]:
        assert self.shape is not None
        if conditions is None or conditions.get("masks") is None:
            raise UserError(f"generator '{self.name}' is mask-conditioned: pass conditions with 'masks'")
        masks = np.asarray(conditions["masks"])
        check_masks(masks, self.shape, self.name)
        if n is not None:
            if n > len(masks):
                raise UserError(f"asked for {n} samples but only {len(masks)} conditioning masks were given")
            masks = masks[:n]
        k = len(masks)
        vendor = conditions.get("vendor")
        group = conditions.get("group")
        return masks, None if vendor is None else np.asarray(vendor)[:k], None if group is None else np.asarray(group)[:k]

    @torch.no_grad()
    def sample(self, n: int | None = None, *, conditions: Mapping[str, Any] | None = None, seed: int = 0,
               batch_size: int = 32, steps: int | None = None, guidance: float | None = None,
               sampler: str | None = None) -> SampleSet:
        """Images for the given conditioning masks (and vendor/group), seeded.

        ``steps``, ``guidance`` and ``sampler`` set the sampler of diffusion/flow families
        (``sampler``: the flow family's ODE solver; ignored by one-shot generators such as the GAN)."""
        if self.nets is None or self.vocab is None:
            raise UserError(f"generator '{self.name}' has not been fitted or loaded")
        masks, vendor, group = self._prepare_conditions(n, conditions)
        self.sampling = {"steps": steps, "guidance": guidance, "sampler": sampler}
        v_idx, g_idx = self.vocab.encode(vendor, group, len(masks))
        self.nets.eval()
        out = np.empty((len(masks), *self.shape), np.float32)
        gen = torch.Generator().manual_seed(int(seed))
        for lo in tqdm(range(0, len(masks), batch_size), desc=f"sample {self.name}", disable=progress_disabled(), leave=False):
            hi = min(lo + batch_size, len(masks))
            m = one_hot(self._tensor(masks[lo:hi]))
            with devices.autocast(self.device, self.amp):
                x = self.generate(m, v_idx[lo:hi].to(self.device), g_idx[lo:hi].to(self.device), gen)
            out[lo:hi] = x.float().clamp(0, 1)[:, 0].cpu().numpy()
        extra = {k: np.asarray(conditions[k])[: len(masks)] for k in ("subject_ids", "vendor", "group")
                 if conditions and conditions.get(k) is not None}
        return SampleSet(images=out, masks=masks.copy(), spacing=self.spacing, **extra)

    # ------------------------------------------------------------------ io
    def save(self, directory: str | Path) -> None:
        if self.nets is None:
            raise UserError(f"generator '{self.name}' has not been fitted; nothing to save")
        ckpt.save(directory, generator=self.name, model_config=self.model_config(), step=self.steps_done,
                  weights={f"{k}.{p}": v for k, net in self.nets.items() for p, v in net.state_dict().items()},
                  extra={"dp": self.dp_summary} if self.dp_summary is not None else None)

    @classmethod
    def load(cls, directory: str | Path) -> "MaskConditioned2D":
        c = ckpt.load(directory, generator=cls.name)
        g = cls()
        try:
            g._from_model_config(c.model_config)
            g.build(train=False)
            for k, net in g.nets.items():
                net.load_state_dict({p[len(k) + 1:]: v for p, v in c.weights.items() if p.startswith(k + ".")})
        except (KeyError, RuntimeError, TypeError) as exc:
            raise UserError(f"{directory}: incompatible checkpoint for generator '{cls.name}' ({str(exc).splitlines()[0]})") from None
        g.steps_done = c.step
        g.dp_summary = (c.extra or {}).get("dp")
        return g

    def describe(self) -> str:
        n = sum(p.numel() for p in self.nets.parameters()) if self.nets is not None else 0
        return f"{self.name}: {n / 1e6:.2f} M parameters, options {json.dumps(self.options, sort_keys=True)}"
