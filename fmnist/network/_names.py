"""Name lookup shared by activations, initialisers, losses and optimizers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(kind: str, name: str, table: Mapping[str, T], spellings: Mapping[str, str] | None = None) -> T:
    """Return ``table[name]``, accepting the DA6401 spelling or the lowercase one.

    Raises:
        ValueError: ``name`` is unknown; the message lists every valid name.
    """
    key = str(name).lower()
    if key in table:
        return table[key]
    spellings = spellings or {}
    valid = ", ".join(f"{spellings[k]}|{k}" if k in spellings else k for k in table)
    raise ValueError(f"unknown {kind} {name!r}; valid: {valid}")
