"""Name lookup shared by activations, initialisers, losses and optimizers, through ``fmnist.names``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from fmnist import names

T = TypeVar("T")


def lookup(kind: str, name: str, table: Mapping[str, T], spellings: Mapping[str, str] | None = None) -> T:
    """Return ``table[name]`` for any spelling of ``name`` that ``fmnist.names`` accepts (``ReLU``, ``relu``,
    ``nesterov`` for ``nag``...); ``spellings`` maps table keys to how they are shown in the error.

    Raises:
        UnknownNameError (a ValueError): ``name`` is unknown; the one-line message suggests the nearest name and
        lists every valid one.
    """
    table_kind = names.kind_of(kind)
    candidates = [str(name), str(name).lower()]
    if table_kind is not None:
        candidates.append(names.resolve(table_kind, name) or "")
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    if table_kind is not None and set(table) == set(names.values(table_kind)):
        names.canonical(table_kind, name)  # raises: nearest of every accepted spelling, the valid ones listed
    spellings = spellings or {}
    shown = [spellings.get(k) or (names.display(table_kind, k) if table_kind else k) for k in table]
    index = {names.key(s): (s, s) for s in shown}
    raise names.UnknownNameError(kind, name, shown, names.suggest(name, index))
