"""Validation and resolution of a generator family's options (``generator_options``).

Resolution (:func:`resolve_options`) is the one place where a family's options are merged: the
family's ``defaults``, for an object-valued option (``ae``) the full schema of that object (the
autoencoder's ``AE_DEFAULTS``) under the family's own defaults for it, then the given options.
A generator resolves its options once when it is built and keeps the result; ``audit run``
resolves the run's ``generator_options`` with the same function before it writes ``config.json``,
so that file alone rebuilds the generator. Resolving a resolved dict gives the same dict. Where a
setting comes from, layer by layer: ``docs/configuration.md``.

A family's ``defaults`` are its option schema: each key's default fixes the type a user value must
have, and the rules below fix the ranges every family shares, so that a bad option is refused in
one line before the run starts (``audit run`` calls :meth:`generators.base.Generator.check_options`
before any stage), not as a torch error minutes into training:

* unknown keys are refused with the known ones listed;
* ``true``/``false`` options take booleans, text options take text;
* integer options take integers (a float such as ``3.0`` is refused) and are counts or sizes,
  so >= 1; options named ``*_start`` are step indices, >= 0;
* number options take finite numbers >= 0; options named ``p_*`` are probabilities in [0, 1];
* list options are non-empty lists of integers >= 1 (channel widths);
* nested options (``ae``) are checked against their own schema;
* where a family has ``channels`` and ``norm_groups``, every width is divisible by the number of
  groups (GroupNorm, used by every MONAI U-Net and autoencoder here, requires it).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

from audit.core.errors import UserError


def _problem(key: str, value: Any, default: Any) -> str:
    name = key.rsplit(".", 1)[-1]
    if isinstance(default, bool):
        return "" if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        low = 0 if name.endswith("_start") else 1
        return "" if value >= low else f"must be >= {low}, got {value}"
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if name.startswith("p_") and not 0 <= value <= 1:
            return f"is a probability: must be in [0, 1], got {value}"
        return "" if value >= 0 else f"must be >= 0, got {value}"
    if isinstance(default, str):
        return "" if isinstance(value, str) else f"must be text, got {value!r}"
    if isinstance(default, list):
        ok = (isinstance(value, list) and value
              and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in value))
        return "" if ok else f"must be a non-empty list of integers >= 1, got {value!r}"
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            return f"must be an object of options, got {value!r}"
        return ""
    return ""


def check_options(generator: str, given: Mapping[str, Any], defaults: Mapping[str, Any], *,
                  nested: Mapping[str, Mapping[str, Any]] | None = None, prefix: str = "") -> None:
    """Refuse (:class:`~audit.core.errors.UserError`, one line naming the option) any option of
    ``given`` that ``defaults`` does not know or whose value breaks the rules of this module.
    ``nested[key]`` is the full schema of an object-valued option (e.g. the autoencoder's
    ``AE_DEFAULTS`` for ``ae``, whose family default may list only some of its keys)."""
    nested = nested or {}
    if not isinstance(given, Mapping):
        raise UserError(f"generator '{generator}': generator_options must be an object, got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        where = f" in {prefix.rstrip('.')}" if prefix else ""
        raise UserError(f"generator '{generator}': unknown option(s){where} {unknown}; known: {', '.join(sorted(defaults))}")
    for key, value in given.items():
        problem = _problem(prefix + key, value, defaults[key])
        if problem:
            raise UserError(f"generator '{generator}': option {prefix}{key} {problem}")
        if isinstance(defaults[key], Mapping):
            schema = nested.get(key, defaults[key])
            check_options(generator, value, schema, prefix=f"{prefix}{key}.")
    merged = {**defaults, **given}
    for key, schema in nested.items():
        if isinstance(merged.get(key), Mapping):
            _check_groups(generator, {**schema, **merged[key]}, f"{prefix}{key}.")
    _check_groups(generator, merged, prefix)


def _check_groups(generator: str, options: Mapping[str, Any], prefix: str) -> None:
    channels, groups = options.get("channels"), options.get("norm_groups")
    if isinstance(channels, list) and isinstance(groups, int) and groups >= 1:
        bad = [c for c in channels if isinstance(c, int) and c % groups]
        if bad:
            raise UserError(f"generator '{generator}': option {prefix}channels {channels} must all be divisible by "
                            f"{prefix}norm_groups {groups} (GroupNorm); {bad} are not")


def resolve_options(generator: str, given: Mapping[str, Any], defaults: Mapping[str, Any], *,
                    nested: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The full options of a family: ``given`` checked (:func:`check_options`), then every key of
    ``defaults`` with the given value where there is one. A number option given as an integer
    (``lr=1``) becomes the float its default is. An object-valued option is the full schema
    ``nested[key]`` (else ``{}``), completed by the family's default for it, completed by the given
    object, values kept as given (the autoencoder cache key hashes them: :mod:`generators.autoencoder`).

    Idempotent: ``resolve_options(g, resolve_options(g, x, d, nested=n), d, nested=n)`` equals
    ``resolve_options(g, x, d, nested=n)``."""
    nested = nested or {}
    check_options(generator, given, defaults, nested=nested)
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        if isinstance(default, float) and key in given:
            value = float(value)
        elif isinstance(default, Mapping):
            value = {**nested.get(key, {}), **default, **(given.get(key) or {})}
        out[key] = copy.deepcopy(value)
    return out


def upgrade_options(stored: Mapping[str, Any], defaults: Mapping[str, Any], *,
                    nested: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Options that an older version resolved and stored (a training checkpoint's model config)
    in the form :func:`resolve_options` gives today, so that an interrupted fit still resumes:
    numbers given as integers as floats, object-valued options completed by their schema. No
    other option is added or changed, so a checkpoint that lacks an option (trained before it
    existed) still differs from today's config and is refused."""
    nested = nested or {}
    out = dict(stored)
    for key, value in stored.items():
        default = defaults.get(key)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(default, Mapping) and isinstance(value, Mapping):
            out[key] = {**nested.get(key, {}), **default, **value}
    return out
