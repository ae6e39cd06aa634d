"""The run configuration: a tree of dataclasses, presets, and overrides.

Resolution order (later wins; the whole story, generator options included, is
``docs/configuration.md``)::

    dataclass defaults  ->  preset (smoke | quick | full)  ->  generator preset overrides
    ->  --config FILE (JSON or TOML)  ->  --set KEY=VALUE and dedicated CLI flags

Keys are dotted paths into the tree (``train.steps``, ``data.size``). An unknown key is an
error that names the key (and the closest known key), so a typo never silently falls back to
a default. The fully resolved tree, including seed and preset and with ``generator_options``
resolved by the generator (:func:`audit.pipeline.run.with_resolved_options`), is what
``config.json`` in a run directory holds, and what ``--resume`` compares against.

Presets:

* ``smoke`` -- seconds; tiny cohort and networks; what the test-suite and ``tox`` use.
* ``quick`` -- minutes on a 2-core CPU; the default of ``audit run``.
* ``full``  -- GPU-sized (one H100/H200).

This module holds the schema (the dataclasses), the presets and the resolution; turning text
(``--set`` values, config files) into typed values is :mod:`audit.pipeline.config_parse`, whose
public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from audit.core.errors import UserError
from audit.pipeline.config_parse import (
    REMOVED_KEYS,
    brief,
    coerce,
    config_to_dict,
    field_types,
    flat_keys,
    json_problem,
    load_config_file,
    parse_scalar,
    parse_set_options,
    unknown_key,
)
from generators.sampleset import MAX_LOAD_BYTES

__all__ = [
    "DataConfig",
    "TrainConfig",
    "SampleConfig",
    "DPConfig",
    "AuditConfig",
    "RunConfig",
    "PRESETS",
    "DEFAULT_PRESET",
    "resolve_config",
    "apply_overrides",
    "config_to_dict",
    "config_from_dict",
    "config_diff",
    "load_config_file",
    "parse_set_options",
    "flat_keys",
]


#: the largest built-in phantom (each subject is a few MB of NIfTI; larger cohorts are real data)
MAX_PHANTOM_SUBJECTS = 5000
#: the largest working grid (pixels per side)
MAX_SIZE = 1024
#: the generator of `audit run` without --generator (README command 1)
DEFAULT_GENERATOR = "ldm"


PROTOCOLS = ("auto", "all_vendors", "source_only")
"""Values of ``data.protocol`` (see :class:`DataConfig`)."""
#: values of ``data.frames`` (``audit.utility_frames`` also takes "" = the same as ``data.frames``)
FRAME_CHOICES = ("ed_es", "labelled", "all")


@dataclass
class DataConfig:
    """Which cohort to use and how to preprocess it (see :mod:`cohorts.preprocess`)."""

    source: str = "phantom"
    """``phantom`` (built-in, generated and cached) or the path of an ACDC / M&Ms directory."""
    phantom_subjects: int = 160
    """Subjects in the generated phantom (stratified over vendors A-D x five groups). 160 gives the
    source-only splits (``protocol`` auto, the default) 48 train (members) and 48 holdout + test
    subjects (non-members) of vendors A-C and 40 unseen-vendor subjects of D: a subject-level
    membership AUC CI of half-width about 0.12 even for an attack at chance (Hanley-McNeil: 1.96
    SE(0.5) = 1.96 sqrt((m + n + 1) / (12 m n)) = 0.116 at m = n = 48; 0.100 at the 64 / 64 of the
    all-vendors splits), and 16 or more evaluation subjects per vendor for the utility audit's
    paired tests."""
    phantom_seed: int = 0
    target_spacing: float = 1.5
    """In-plane spacing in mm after resampling."""
    size: int = 128
    """Side of the square crop around the heart, in pixels."""
    frames: str = "ed_es"
    """Which frames become 2D training/audit images: ``ed_es``, ``labelled`` or ``all``."""
    split_seed: int = 0
    split_file: str = ""
    """An existing split JSON to reuse (its data hash must match the cohort); empty = make one."""
    heldout_vendor: str = ""
    """Vendor left out for the domain-shift split; empty = the last vendor alphabetically."""
    protocol: str = "auto"
    """Which vendors the generator may learn from when the cohort has two or more: ``all_vendors``
    (the standard splits; the held-out vendor is unseen only by the utility segmenter),
    ``source_only`` (Wong et al.'s protocol: the run uses the leave-one-vendor-out splits, so the
    generator, its autoencoder and every cached model are fitted on the seen vendors only, and the
    held-out vendor's subjects are only evaluated on, in ``unseen_vendor_test``) or ``auto``:
    source-only where the run has unseen-vendor rows (two or more vendors and ``audit.utility``
    on), so that they measure generalisation to a domain the generator never saw; all-vendors
    otherwise (one vendor, or no utility audit: the generator then keeps every training subject).
    Under ``auto`` a ``split_file`` decides by its kind. The cohort stage records the protocol it
    resolved (``state.json``: ``stages.cohort.protocol``)."""


@dataclass
class TrainConfig:
    """Generic training-loop settings shared by every trainable generator."""

    steps: int = 2000
    batch_size: int = 16
    ema_decay: float = 0.999
    ema_warmup_steps: int = 200
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    """Training checkpoints kept (the newest); 0 keeps every one, e.g. for the training-length curves
    of ``benchmarks/sampler_sweep.py --checkpoint``."""
    num_threads: int = 0
    """Torch intra-op threads; 0 = every core this process may run on (its CPU affinity: taskset,
    Slurm or cgroup cpusets; :func:`audit.core.cpus.usable_cores`)."""
    amp: bool = True
    """bf16 autocast for the generators' forward passes where the device runs bf16 natively (CUDA;
    CPUs with AVX512-BF16 or AMX-BF16 instructions); never under DP-SGD (:mod:`generators.device`)."""


#: values of ``sample.sampler`` (which apply depends on the family: see :class:`SampleConfig`)
SAMPLERS = ("auto", "ddim", "euler", "heun", "midpoint")


@dataclass
class SampleConfig:
    """How many images to draw for the audit and with which sampler."""

    n_samples: int = 400
    sampler: str = "auto"
    """The diffusion/flow sampler: ``auto`` = the family's own (DDIM for ddpm / ldm / cine, the
    second-order midpoint rule for flow); flow also takes ``euler`` (one network call per step) or
    ``heun`` / ``midpoint`` (two per step). One-shot generators (gan, vae) ignore it."""
    sampler_steps: int = 20
    guidance_scale: float = 2.0
    batch_size: int = 32
    condition_split: str = "reference"
    """Split whose masks condition the samples (see :mod:`audit.pipeline.stages` for why not holdout/test)."""

    def sampler_settings(self) -> dict[str, Any]:
        """The sampler keywords of :meth:`generators.base.Generator.sample` (and of a generator's
        ``sampling`` for SDEdit): ``steps``, ``guidance``, ``sampler``."""
        return {"steps": self.sampler_steps, "guidance": self.guidance_scale, "sampler": self.sampler}


@dataclass
class DPConfig:
    """Differential privacy (DP-SGD via Opacus). Disabled unless epsilon or a noise multiplier is set."""

    epsilon: float = 0.0
    """Target epsilon; 0 = no DP."""
    delta: float = 0.0
    """Target delta; 0 = choose 1 / (10 * N_train) when DP is on."""
    noise_multiplier: float = 0.0
    """Fixed noise multiplier instead of a target epsilon; 0 = calibrate from epsilon."""
    max_grad_norm: float = 1.0
    """Clipping norm C of each privacy unit's gradient (L2 over all parameters of a network)."""
    accountant: str = "rdp"
    """Accountant that calibrates the noise: ``rdp`` or ``prv`` (both are reported)."""
    unit: str = "subject"
    """Privacy unit: ``subject`` (a patient: all of their slices) or ``slice``."""
    slices_per_unit: int = 2
    """Slices drawn from each Poisson-sampled subject per step (``unit = subject``)."""
    grad_sample_mode: str = "hooks"
    """Opacus per-sample gradient mode: ``hooks`` (fastest for these conv nets) or ``functorch``."""
    audit_canaries: int = 0
    """One-run DP audit: training subjects (or images, ``audit_canary_unit``) planted as canaries,
    each trained on with probability 1/2 (``--dp-audit-canaries``; 0 = off, else >= 10; subjects:
    at most half the training subjects; :mod:`audit.privacy.canaries`)."""
    audit_canary_unit: str = "subject"
    """What one canary is: ``subject`` (all of a training subject's slices, in or out together; the
    privacy unit of a per-subject guarantee) or ``image`` (one training slice; its subject's other
    slices stay in training, so it carries little signal)."""

    @property
    def enabled(self) -> bool:
        return self.epsilon > 0 or self.noise_multiplier > 0


@dataclass
class AuditConfig:
    """Which audits run and at what size."""

    privacy: bool = True
    fidelity: bool = True
    anatomy: bool = True
    utility: bool = True
    max_images: int = 400
    """Cap on real images per split that enter the judge-based audits (the judge is the bottleneck)."""
    privacy_max_images: int = 5000
    """Cap on the member and on the non-member images of the privacy audit (each). No judge runs
    there and the attacks are cheap, so it uses every image up to this bound: TPR at 0.1 % FPR
    needs at least 1,000 non-member images."""
    bootstrap: int = 1000
    judge_precision: str = "int8"
    sdedit_images: int = 32
    """Reference images restyled with SDEdit at strengths 0.3/0.5/0.7 (diffusion/flow only; 0 = off)."""
    utility_seeds: int = 1
    """Seeds per utility setting (segmentation nets trained on real / real+augmentation /
    synthetic / real+synthetic / real+SDEdit data)."""
    utility_steps: int = 1000
    """Training steps per utility net (poly learning-rate decay to 0 at the last step; the best
    validation step is kept)."""
    utility_batch_size: int = 8
    utility_width: int = 16
    """Base width of the utility BasicUNet (features w, w, 2w, 4w, 8w, w)."""
    utility_crop: int = 96
    """Side of the training patches cut from each image (0 = the whole image; a multiple of 16 >= 32;
    an image no larger than the patch is used whole). Patches of 96 at 1.5 mm (144 mm, the heart
    and its surroundings) cost about half a whole-image step, so the nets see twice the images in
    the same time."""
    utility_lr: float = 3e-3
    """Peak learning rate of AdamW (decayed by the poly schedule)."""
    utility_precision: str = "auto"
    """``auto`` (bfloat16 autocast where the CPU or GPU computes bf16 in hardware,
    :func:`generators.device.bf16_native`), ``bf16`` or ``fp32``."""
    utility_eval_crop: str = "motion"
    """How the evaluation (and validation) subjects' 2D window is placed: ``motion`` (label-free,
    where the image changes over the cardiac cycle) or ``mask`` (centred on the ground truth: an
    oracle, for comparison with runs made before this option)."""
    utility_postprocess: str = "largest_component"
    """Post-processing of the utility nets' label maps (validation and evaluation):
    ``largest_component`` keeps the largest connected heart per slice, as nnU-Net does
    (:mod:`audit.utility.postprocess`); ``none`` scores the raw arg-max maps."""
    utility_predict_scales: str = "1"
    """Multi-scale test-time augmentation of every utility prediction (validation included): the
    zooms, comma-separated in [0.5, 2], whose class probabilities are averaged
    (:mod:`audit.utility.multiscale`); ``1`` = a plain prediction, ``0.9,1,1.1`` triples the
    prediction cost (effect measured in BENCHMARKS.md "Utility segmenter on real ACDC")."""
    utility_tta_strengths: str = "0.25,0.5"
    """Test-time adaptation: SDEdit strengths (comma-separated, each in (0, 1]; empty = off) at which the
    unseen domains' test scans are restyled without labels towards a seen vendor and segmented by the
    real-trained nets (:mod:`audit.pipeline.utility_tta`; diffusion and flow generators only)."""
    utility_test_data: str = ""
    """A second dataset (ACDC or M&Ms layout) on which every utility net is also scored, per vendor
    (``external@<vendor>`` keys; :mod:`audit.pipeline.utility_external`); its subjects never train
    anything. Empty = none. The CLI flag is ``--utility-test-data DIR``."""
    utility_synthetic_ratio: float = 1.0
    """Synthetic images added per real training image in the real+synthetic setting."""
    utility_sdedit_strength: float = 0.5
    utility_val_fraction: float = 0.2
    utility_frames: str = ""
    """Frames of the real subjects the utility nets train, validate and are scored on: empty =
    ``data.frames``; ``ed_es`` = the end-diastolic and end-systolic frames only, the ones real
    datasets annotate (ACDC, M&Ms). The cine presets set ``ed_es``: the generator trains on whole
    cines (``data.frames=all``), the phantom labels every frame, and the question of the 4D paper
    is what synthetic frames of the rest of the cycle add to ED/ES labels."""
    utility_mask_agreement: float = 0.9
    """Fraction of the judge's real-scan Dice below which the synthetic masks are flagged as doubtful
    training labels (``utility.synthetic_masks``, :mod:`audit.pipeline.utility_masks`): the judge
    checks the pairs and the verdict goes into the synthetic settings' notes; it changes no training."""
    clinical_subjects: int = 8
    """Subjects of ``sample.condition_split`` whose whole ED and ES stacks are generated to compare
    clinical indices (EDV, ESV, EF, mass) of the judge's segmentation with the requested ones (0 = off).
    For a cine sample set: the generated subjects whose whole stacks (every slice and frame) are judged."""
    feature_extractor: str = ""
    """A local TorchScript feature extractor (e.g. the FID Inception network) for a second fidelity
    feature space, labelled by its file (:mod:`audit.fidelity.external`); empty = judge features only."""
    feature_extractor_sha256: str = ""
    """The extractor file's sha256 (64 hex digits, ``sha256sum FILE``), required with ``feature_extractor``:
    loading TorchScript runs its code, so a run refuses a file whose hash is not pinned or differs."""
    feature_extractor_size: int = 299
    """Square input size the extractor expects (299 for Inception-v3)."""
    include_real_images: bool = False
    """Embed real patient images in the report (opt-in; adds a banner)."""


@dataclass
class RunConfig:
    """The whole run. ``config.json`` in a run directory is ``config_to_dict`` of this."""

    generator: str = DEFAULT_GENERATOR
    preset: str = "quick"
    seed: int = 0
    device: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    dp: DPConfig = field(default_factory=DPConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    generator_options: dict[str, Any] = field(default_factory=dict)
    """Family-specific settings (network widths, schedules); validated and resolved by the generator
    (``docs/configuration.md``)."""


DEFAULT_PRESET = "quick"

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "data.phantom_subjects": 10,
        "data.size": 64,
        "data.target_spacing": 3.0,
        "train.steps": 20,
        "train.batch_size": 8,
        "train.checkpoint_every": 10,
        "train.ema_warmup_steps": 5,
        "sample.n_samples": 16,
        "sample.sampler_steps": 4,
        "sample.batch_size": 16,
        "audit.max_images": 16,
        "audit.privacy_max_images": 16,
        "audit.bootstrap": 50,
        "audit.judge_precision": "fp32",  # no one-off int8 quantisation in seconds-long runs
        "audit.sdedit_images": 4,
        "audit.clinical_subjects": 3,
        "audit.utility_seeds": 2,
        "audit.utility_steps": 6,
        "audit.utility_batch_size": 4,
        "audit.utility_width": 4,
        "audit.utility_tta_strengths": "0.5",  # one strength is enough to exercise test-time adaptation
    },
    "quick": {},
    # one CUDA GPU; the whole run (phantom, training, audit) is sized for about 8 minutes on an
    # H100/H200 (benchmarks/gpu.sh; the generators' own "full" presets set their training length).
    # The stage times behind the sizes, e.g. 300 utility steps x 2 seeds, are in BENCHMARKS.md "GPU"
    "full": {
        "data.phantom_subjects": 100,
        "data.frames": "all",
        "train.steps": 3000,
        "train.batch_size": 128,
        "sample.n_samples": 1000,
        "sample.sampler_steps": 50,
        "sample.batch_size": 250,
        "audit.max_images": 1000,
        "audit.clinical_subjects": 16,
        "audit.utility_seeds": 2,
        "audit.utility_steps": 300,
        "audit.utility_batch_size": 32,
        "audit.utility_width": 32,
        "audit.utility_crop": 0,  # whole images: a GPU step costs little
        "device": "cuda",
    },
}


# --------------------------------------------------------------------------- resolution


def apply_overrides(cfg: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Return a copy of ``cfg`` with dotted-key ``overrides`` applied (types coerced).

    ``generator_options.<name>`` keys are free-form (the generator validates them);
    every other key must exist in the tree.
    """
    cfg = config_from_dict(config_to_dict(cfg))  # deep copy
    known = list(flat_keys(cfg))
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "generator_options" and len(parts) >= 2:
            target = cfg.generator_options
            for i, p in enumerate(parts[1:-1], start=2):
                target = target.setdefault(p, {})
                if not isinstance(target, dict):  # e.g. generator_options.a=1 and then generator_options.a.b=2
                    raise UserError(f"config key '{key}': '{'.'.join(parts[:i])}' is {brief(target)}, not an object")
            target[parts[-1]] = parse_scalar(value) if isinstance(value, str) else value
            continue
        if key == "generator_options":
            cfg.generator_options = coerce(value, dict, key)
            continue
        obj: Any = cfg
        for p in parts[:-1]:
            if not dataclasses.is_dataclass(obj) or p not in {f.name for f in dataclasses.fields(obj)}:
                raise unknown_key(key, known)
            obj = getattr(obj, p)
            if not dataclasses.is_dataclass(obj):
                raise unknown_key(key, known)
        leaf = parts[-1]
        if not dataclasses.is_dataclass(obj) or leaf not in {f.name for f in dataclasses.fields(obj)}:
            raise unknown_key(key, known)
        if dataclasses.is_dataclass(getattr(obj, leaf)):
            raise UserError(f"config key '{key}' is a section; set one of its keys, e.g. '{key}.{dataclasses.fields(getattr(obj, leaf))[0].name}'")
        setattr(obj, leaf, coerce(value, field_types(type(obj))[leaf], key))
    _check(cfg)
    return cfg


def config_from_dict(data: Mapping[str, Any], *, strict: bool = True) -> RunConfig:
    """Build a :class:`RunConfig` from a nested dict (e.g. a ``config.json``).

    With ``strict`` unknown keys raise :class:`UserError` naming the key. A key in
    :data:`REMOVED_KEYS` (a ``config.json`` written by an older version) is dropped: nothing read it.
    """
    cfg = RunConfig()
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name, value in data.items():
        if name not in sections:
            if strict:
                raise unknown_key(name, list(sections))
            continue
        current = getattr(cfg, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise UserError(f"config section '{name}' must be an object, got {type(value).__name__}")
            sub_fields = field_types(type(current))
            for k, v in value.items():
                if f"{name}.{k}" in REMOVED_KEYS:
                    continue
                if k not in sub_fields:
                    if strict:
                        raise unknown_key(f"{name}.{k}", [f"{name}.{s}" for s in sub_fields])
                    continue
                setattr(current, k, coerce(v, sub_fields[k], f"{name}.{k}"))
        else:
            setattr(cfg, name, coerce(value, field_types(RunConfig)[name], name))
    return cfg


#: seeds lie in [0, SEED_LIMIT): what every RNG the run seeds accepts (``np.random.seed`` and
#: ``RandomState`` stop at 2**32 - 1, ``default_rng`` refuses negative seeds)
SEED_LIMIT = 2**32
SEED_KEYS = ("seed", "data.phantom_seed", "data.split_seed")


def _check(cfg: RunConfig) -> None:
    """Range checks that do not depend on the generator."""
    if cfg.preset not in PRESETS:
        raise UserError(f"unknown preset '{cfg.preset}'; choose one of: {', '.join(PRESETS)}")
    # first: a NaN would otherwise fail a range check below with a misleading message
    for key, value in flat_keys(cfg).items():
        problem = json_problem(value, key)
        if problem:
            raise UserError(problem)
    for key, value in flat_keys(cfg).items():
        if key in SEED_KEYS and not 0 <= value < SEED_LIMIT:
            raise UserError(f"{key} must be in [0, 2**32), got {brief(value)}")
    checks = [
        (cfg.data.size >= 16, "data.size must be >= 16 pixels"),
        (cfg.data.target_spacing > 0, "data.target_spacing must be > 0 mm"),
        (0 < cfg.data.phantom_subjects <= MAX_PHANTOM_SUBJECTS,
         f"data.phantom_subjects must be in [1, {MAX_PHANTOM_SUBJECTS}] (the phantom is demo and test data; "
         "give a real cohort with --data for more)"),
        (cfg.data.size <= MAX_SIZE, f"data.size must be <= {MAX_SIZE} pixels"),
        (cfg.data.frames in FRAME_CHOICES, f"data.frames must be one of {', '.join(FRAME_CHOICES)}"),
        (cfg.data.protocol in PROTOCOLS, f"data.protocol must be one of {', '.join(PROTOCOLS)}"),
        (cfg.train.steps >= 0, "train.steps must be >= 0"),
        (cfg.train.batch_size > 0, "train.batch_size must be > 0"),
        (cfg.train.keep_checkpoints >= 0, "train.keep_checkpoints must be >= 0 (0 = keep every checkpoint)"),
        (cfg.train.num_threads >= 0, "train.num_threads must be >= 0 (0 = all cores)"),
        (0 <= cfg.train.ema_decay < 1, "train.ema_decay must be in [0, 1)"),
        (cfg.sample.n_samples > 0, "sample.n_samples must be > 0"),
        (cfg.sample.batch_size > 0, "sample.batch_size must be > 0"),
        (cfg.sample.n_samples * cfg.data.size ** 2 * 4 <= MAX_LOAD_BYTES,
         f"sample.n_samples x data.size^2 float32 images must fit a sample set ({MAX_LOAD_BYTES // 2**30} GiB), got "
         f"{cfg.sample.n_samples} x {cfg.data.size}^2"),
        (cfg.sample.sampler_steps >= 1, "sample.sampler_steps must be >= 1"),
        (cfg.sample.guidance_scale >= 0, "sample.guidance_scale must be >= 0 (0 = unconditional, 1 = no guidance)"),
        (cfg.sample.sampler in SAMPLERS, f"sample.sampler must be one of {', '.join(SAMPLERS)}"),
        (cfg.sample.condition_split in ("train", "holdout", "reference", "test"), "sample.condition_split must be train, holdout, reference or test"),
        (cfg.audit.max_images > 0, "audit.max_images must be > 0"),
        (cfg.audit.privacy_max_images > 0, "audit.privacy_max_images must be > 0"),
        (cfg.audit.clinical_subjects >= 0, "audit.clinical_subjects must be >= 0"),
        (cfg.audit.bootstrap >= 1, "audit.bootstrap must be >= 1"),
        (cfg.audit.sdedit_images >= 0, "audit.sdedit_images must be >= 0"),
        (cfg.audit.feature_extractor_size >= 16, "audit.feature_extractor_size must be >= 16 pixels"),
        (cfg.audit.judge_precision in ("fp32", "int8"), "audit.judge_precision must be fp32 or int8"),
        (not cfg.audit.feature_extractor_sha256 or re.fullmatch(r"[0-9a-fA-F]{64}", cfg.audit.feature_extractor_sha256),
         f"audit.feature_extractor_sha256 must be 64 hexadecimal digits (the first field of `sha256sum FILE`), "
         f"got {cfg.audit.feature_extractor_sha256!r}"),
        (cfg.dp.epsilon >= 0, "dp.epsilon must be > 0 (or 0 for no DP)"),
        (0 <= cfg.dp.delta < 1, "dp.delta must be in (0, 1)"),
        (cfg.dp.noise_multiplier >= 0, "dp.noise_multiplier must be >= 0"),
        (cfg.dp.max_grad_norm > 0, "dp.max_grad_norm must be > 0"),
        (cfg.dp.unit in ("subject", "slice"), "dp.unit must be subject or slice"),
        (cfg.dp.slices_per_unit >= 1, "dp.slices_per_unit must be >= 1"),
        (cfg.dp.grad_sample_mode in ("hooks", "functorch"), "dp.grad_sample_mode must be hooks or functorch"),
        (cfg.dp.accountant in ("rdp", "prv"), "dp.accountant must be rdp or prv"),
        (cfg.dp.audit_canaries >= 0, "dp.audit_canaries must be >= 0 (0 = no one-run audit)"),
        (cfg.dp.audit_canary_unit in ("subject", "image"), "dp.audit_canary_unit must be subject or image"),
        (not (cfg.dp.epsilon > 0 and cfg.dp.noise_multiplier > 0),
         "give either dp.epsilon (--dp-epsilon) or dp.noise_multiplier (--dp-noise-multiplier), not both"),
        (cfg.device in ("cpu", "cuda") or cfg.device.startswith("cuda:"), "device must be cpu, cuda or cuda:N"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def resolve_config(
    *,
    preset: str = DEFAULT_PRESET,
    generator: str | None = None,
    generator_preset: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve the full configuration in the documented order."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
    merged: dict[str, Any] = {"preset": preset}
    if generator is not None:
        merged["generator"] = generator
    merged.update(PRESETS[preset])
    merged.update(generator_preset or {})
    if config_file:
        merged.update(load_config_file(config_file))
    merged.update(overrides or {})
    return apply_overrides(RunConfig(), merged)


def config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted keys whose values differ between two configs (for ``--resume`` checks)."""
    fa, fb = flat_keys(a), flat_keys(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
