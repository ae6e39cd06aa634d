"""Comma-separated numbers in config values (``"0.25,0.5"``, ``"0.9,1,1.1"``)."""

from __future__ import annotations

__all__ = ["parse_floats"]


def parse_floats(text: str, example: str) -> tuple[float, ...]:
    """The numbers of ``text``, sorted and unique (empty items are skipped, so ``""`` gives ``()``).
    :class:`ValueError` naming the first item that is not a number, with ``example`` as the hint."""
    out = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.add(float(part))
        except ValueError:
            raise ValueError(f"{part!r} is not a number (give e.g. {example})") from None
    return tuple(sorted(out))
