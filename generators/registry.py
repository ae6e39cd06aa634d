"""Generator registry, fed by entry points in the group ``cmr_audit.generators``.

Built-in generators register through the same mechanism as third-party plugins (see
``pyproject.toml``), so ``audit generators`` lists both. A plugin that fails to import is
listed as broken with its error; the rest keep working. Families that are planned but not
built yet are listed as such, and asking for one is a clean "not available yet" error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Mapping

from audit.core.errors import NotAvailableError, UserError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cmr_audit.generators"

#: Families the product promises; they appear in listings until an entry point provides them.
PLANNED: dict[str, str] = {
    "gan": "mask-conditioned GAN (SPADE generator, spectral-norm patch discriminator, hinge loss)",
    "vae": "conditional VAE with image and segmentation decoders, semi-supervised",
    "ddpm": "pixel-space mask-conditioned diffusion (DDPM/DDIM)",
    "ldm": "autoencoder-KL + mask-conditioned latent diffusion",
    "flow": "flow matching / rectified flow in the LDM latent space",
    "cine": "4D cine cascade: dual-decoder VAE, static anatomy LDM, residual motion LDM",
    "copycat": "reference: returns training images, lightly augmented (a leak the audit must catch)",
    "holdout": "reference: returns real holdout-subject images (no leak, perfect realism)",
    "noise": "reference: mask-shaped noise (no realism)",
    "external": "a sample set from any other tool (audit run --samples FILE)",
}


@dataclass
class GeneratorEntry:
    name: str
    status: str  # "available" | "broken" | "planned"
    description: str = ""
    family: str = ""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    error: str = ""
    cls: Any = None
    source: str = ""


def discover() -> dict[str, GeneratorEntry]:
    """All generators: available (importable), broken (import failed) and planned."""
    found: dict[str, GeneratorEntry] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            log.warning("generator plugin %r failed to import: %s", ep.name, exc)
            found[ep.name] = GeneratorEntry(ep.name, "broken", error=f"{type(exc).__name__}: {exc}", source=ep.value)
            continue
        found[ep.name] = GeneratorEntry(
            ep.name,
            "available",
            description=getattr(cls, "description", ""),
            family=getattr(cls, "family", ""),
            presets=getattr(cls, "presets", {}),
            cls=cls,
            source=ep.value,
        )
    for name, description in PLANNED.items():
        found.setdefault(name, GeneratorEntry(name, "planned", description=description))
    return dict(sorted(found.items()))


def get(name: str) -> GeneratorEntry:
    """The entry for ``name``; a clean error if it is unknown, broken or not built yet."""
    entries = discover()
    entry = entries.get(name)
    if entry is None:
        raise UserError(f"unknown generator '{name}'; known: {', '.join(entries)} (see 'audit generators')")
    if entry.status == "broken":
        raise UserError(f"generator '{name}' is installed but broken ({entry.source}): {entry.error}")
    if entry.status == "planned":
        raise NotAvailableError(f"generator '{name}' ({entry.description})")
    return entry
