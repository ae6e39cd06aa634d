"""The generator interface every family (and every plugin) implements.

A generator is trained on a cohort's ``train`` split only, and hands the audit a *sample
set* (the NPZ contract of ``docs/sample_set.md``). White-box attacks additionally use
:meth:`Generator.score`, a per-image statistic (denoising loss, ELBO, discriminator output).

Registration is by entry point in the group ``cmr_audit.generators`` (see
:mod:`generators.registry`): ``name = "package.module:GeneratorClass"``.

Options: a class's ``defaults`` (and ``nested_options``) are the schema of ``generator_options``;
:meth:`Generator.resolve_options` merges them with the given options once, when the generator is
built (where a setting comes from: ``docs/configuration.md``).
"""

from __future__ import annotations

import abc
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from audit.core.errors import NotAvailableError
from generators import options


@dataclass
class FitContext:
    """What ``fit`` may use besides the training split and the config."""

    #: real slices of unseen subjects (the ``reference`` split); only the ``holdout`` reference
    #: generator replays them, trainable generators must ignore them
    reference: Any = None
    #: where the training loop keeps periodic checkpoints (``<run>/checkpoints``)
    checkpoint_root: Path | None = None
    #: the loss curve CSV (``<run>/losses.csv``)
    losses_path: Path | None = None
    #: continue from the latest checkpoint under ``checkpoint_root``
    resume: bool = False


class Generator(abc.ABC):
    """Base class. Subclasses set the class attributes and implement the abstract methods."""

    #: registry name, e.g. ``"ldm"``
    name: ClassVar[str]
    #: family shown in reports: ``gan``, ``vae``, ``diffusion``, ``flow``, ``reference``, ...
    family: ClassVar[str] = "other"
    #: one line for ``audit generators``
    description: ClassVar[str] = ""
    #: per-preset config overrides (dotted keys, see :mod:`audit.pipeline.config`)
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: the family's options and their defaults: the schema of ``generator_options`` (empty: the
    #: generator takes its options as given; :mod:`generators.options`)
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: full schemas of object-valued options whose family default lists only some keys (``ae``)
    nested_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: whether the generator learns from data (reference generators may not)
    trainable: ClassVar[bool] = True
    #: what ``fit`` receives and ``sample`` is conditioned on: ``"slices"`` (a
    #: :class:`~generators.data.SliceSet`, conditioning masks) or ``"subjects"`` (a
    #: :class:`~generators.data.StackSet` of whole cine stacks, clinical priors per subject)
    data: ClassVar[str] = "slices"
    #: where the masks of the sample set come from (stated where the audit trains on them)
    mask_source: ClassVar[str] = "the conditioning masks, which the generated images are meant to follow"

    @classmethod
    def check_options(cls, given: Mapping[str, Any]) -> None:
        """Refuse bad ``generator_options`` (a :class:`~audit.core.errors.UserError` naming the
        option); ``audit run`` calls it before any stage. The default accepts anything: a family
        with options checks them (:func:`generators.options.check_options`)."""

    @classmethod
    def resolve_options(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """The full options this generator is built with: ``defaults`` (and ``nested_options``)
        completed by ``given`` (:func:`generators.options.resolve_options`, which refuses options
        outside the schema); ``given`` as it is where the generator has no ``defaults``. Idempotent,
        so a ``config.json`` that holds resolved options resolves to itself."""
        if not cls.defaults:
            return copy.deepcopy(dict(given))
        return options.resolve_options(cls.name, given, cls.defaults, nested=cls.nested_options)

    @classmethod
    def upgrade_model_config(cls, model_config: Mapping[str, Any]) -> dict[str, Any]:
        """A training checkpoint's model config whose ``options`` an older version resolved, in
        today's form (:func:`generators.options.upgrade_options`), for the comparison on resume."""
        stored = model_config.get("options")
        if not isinstance(stored, Mapping):
            return dict(model_config)
        return {**model_config, "options": options.upgrade_options(stored, cls.defaults, nested=cls.nested_options)}

    @abc.abstractmethod
    def fit(self, train: Any, config: Any, context: FitContext | None = None) -> None:
        """Train on the ``train`` split (a :class:`~generators.data.SliceSet` for 2D models)."""

    @abc.abstractmethod
    def sample(self, n: int | None = None, *, conditions: Mapping[str, Any] | None = None, seed: int = 0,
               **sampler: Any) -> Any:
        """Draw a sample set (``n`` images, or one per condition).

        ``sampler`` carries the run's sampler settings (``batch_size``, ``steps``,
        ``guidance``); a generator uses what applies to it and ignores the rest."""

    @abc.abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write ``config.json`` + ``*.safetensors`` (+ optimiser/EMA/RNG state) atomically."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: str | Path) -> "Generator":
        """Load a checkpoint written by :meth:`save` (never unpickles untrusted data)."""

    def score(self, images: Any, masks: Any | None = None, *, seed: int = 0) -> Any:
        """Per-image white-box score (higher = more member-like). Optional: the default says
        the white-box attacks are unavailable for this generator."""

        raise NotAvailableError(f"generator '{self.name}' exposes no white-box score")
