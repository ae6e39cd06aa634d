"""Dotted config keys and their values, independent of the run's schema.

Turns what a user writes -- ``--set KEY=VALUE``, a ``--config`` file (JSON or TOML), a JSON object
for ``generator_options`` -- into typed values of a config dataclass tree: type coercion with
one-line errors, the flat ``{"data.size": ...}`` view of a tree, the check that a value can go into
``config.json``, and the table of removed keys with what replaced them. The schema, the presets
and the resolution order live in :mod:`audit.pipeline.config` (where a setting comes from:
``docs/configuration.md``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from audit.core.errors import UserError


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config dataclass (recursively)."""
    return dataclasses.asdict(cfg)


def field_types(cls: type) -> dict[str, Any]:
    """The field types of a config dataclass (annotations resolved)."""
    return typing.get_type_hints(cls)


def flat_keys(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"data.size": 128, ...}`` for every leaf of the tree (dict leaves stay whole)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flat_keys(value, key + "."))
        else:
            out[key] = value
    return out


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to one short line for an error message (a hostile value can be a
    megabyte string, or an integer too long for ``repr`` at all)."""
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert ``value`` (often a CLI string) to the field type, or raise UserError."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], key)
    if origin is dict or typ is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, an int too long, nesting too deep
                raise UserError(f"config key '{key}' expects a JSON object, got {brief(value)} "
                                f"({getattr(exc, 'msg', None) or type(exc).__name__})") from None
        if not isinstance(value, Mapping):
            raise UserError(f"config key '{key}' expects an object, got {type(value).__name__}")
        return dict(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise UserError(f"config key '{key}' expects true/false, got {brief(value)}")
    if typ is int:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}' expects an integer, got {brief(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UserError(f"config key '{key}' expects an integer, got {brief(value)}")
    if typ is float:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}' expects a number, got {brief(value)}")
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
            raise UserError(f"config key '{key}' expects a number, got {brief(value)}") from None
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"config key '{key}' expects a string, got {brief(value)}")
    return value


#: keys that no longer exist, with what replaces them (a user who still sets one is told where it went)
REMOVED_KEYS = {
    "train.lr": "generator_options.lr (each family has its own learning rate; `audit generators` lists the options)",
}


def unknown_key(key: str, known: list[str]) -> UserError:
    """The error for a key the tree does not have: where a removed key went, else the closest known key."""
    if key in REMOVED_KEYS:
        return UserError(f"config key '{key}' was removed: set {REMOVED_KEYS[key]}")
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserError(f"unknown config key '{key}'{hint}")


def parse_scalar(text: str) -> Any:
    """A ``--set generator_options.K=V`` value: JSON if it parses, else the string itself."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, an int too long to parse, nesting too deep
        return text


def flatten_mapping(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``generator_options`` stays one object)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k != "generator_options":
            out.update(flatten_mapping(v, key + "."))
        else:
            out[key] = v
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into flat dotted overrides."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # TOML/JSON/UTF-8 decode errors, ints too long, nesting too deep
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise UserError(f"config file {path} is not valid {kind}: {(str(exc) or type(exc).__name__)[:200]}") from None
    if not isinstance(data, Mapping):
        raise UserError(f"config file {path} must contain an object at the top level")
    return flatten_mapping(data)


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``--set key=value`` options."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = value.strip()
    return out


def json_problem(value: Any, key: str) -> str | None:
    """Why ``value`` (at dotted ``key``) cannot go into ``config.json``, or ``None``.

    The resolved config is written as strict JSON (no NaN/Infinity, which JSON cannot hold)
    and hashed, so every value must be JSON: a non-finite float from ``--set``, a ``--config``
    file (TOML reads ``inf``/``nan``, Python's JSON reader ``Infinity``/``NaN``) or a flag is
    refused here, in one place, before the run directory is touched; so is a TOML date in
    ``generator_options``."""
    if isinstance(value, float):
        return None if math.isfinite(value) else f"config key '{key}' must be a finite number, got {value}"
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"config key '{key}' has a non-string key {brief(k)}"
            problem = json_problem(v, f"{key}.{k}")
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            problem = json_problem(v, f"{key}[{i}]")
            if problem:
                return problem
        return None
    return f"config key '{key}' holds a {type(value).__name__} ({brief(value)}), which a JSON config cannot hold"
