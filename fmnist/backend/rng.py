"""Random numbers: a seeded host generator for what must match across devices (weights, splits, shuffles), and a
counter-based noise stream for per-step noise drawn on the device (dropout, augmentation).

Neither has hidden device state: ``HostRNG.state`` is NumPy's PCG64 state, ``NoiseStream.state`` is two integers.
So a checkpoint restores both exactly, on any device (a GPU run resumes on the CPU and back).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class HostRNG:
    """A NumPy ``Generator`` (PCG64) drawing on the host and returning arrays on the backend's device.

    Its ``state`` is a JSON-safe dict, so a checkpoint can restore it exactly.
    """

    def __init__(self, backend: Any, seed: int | tuple[int, ...] | None):
        self.backend = backend
        self._gen = np.random.Generator(np.random.PCG64(seed))

    def normal(self, shape: tuple[int, ...], std: float = 1.0) -> Any:
        """Normal(0, std²) samples as float32 on the device."""
        host = self._gen.standard_normal(shape, dtype=np.float32)
        host *= np.float32(std)
        return self.backend.asarray(host)

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> Any:
        """Uniform[low, high) samples as float32 on the device."""
        host = self._gen.random(shape, dtype=np.float32)
        host *= np.float32(high - low)
        host += np.float32(low)
        return self.backend.asarray(host)

    def permutation(self, n: int) -> Any:
        """A random permutation of ``range(n)`` as an int64 index array on the device."""
        return self.backend.asarray(self._gen.permutation(n).astype(np.int64))

    def integers(self, low: int, high: int, size: int | tuple[int, ...]) -> Any:
        """Random integers in [low, high) as an int64 array on the device."""
        return self.backend.asarray(self._gen.integers(low, high, size=size, dtype=np.int64))

    def host_permutation(self, n: int) -> np.ndarray:
        """A random permutation of ``range(n)`` kept on the host (for splits done before data reaches the device)."""
        return self._gen.permutation(n)

    @property
    def state(self) -> dict[str, Any]:
        """The generator state as a JSON-safe dict."""
        return self._gen.bit_generator.state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._gen.bit_generator.state = value


class NoiseStream:
    """Per-step noise for one run: draw number ``counter`` of stream ``seed`` is ``ops.uniform(shape, seed,
    counter)``, a pure function of the two integers, computed on the device without a host round trip.

    Each ``next()`` hands out the next (seed, counter) pair; the trainer owns the stream and saves its ``state``.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.counter = 0

    def next(self) -> tuple[int, int]:
        """The (seed, counter) of the next draw."""
        self.counter += 1
        return self.seed, self.counter

    @property
    def state(self) -> dict[str, int]:
        return {"seed": self.seed, "counter": self.counter}

    @state.setter
    def state(self, value: dict[str, int]) -> None:
        self.seed, self.counter = int(value["seed"]), int(value["counter"])

    def __repr__(self) -> str:
        return f"NoiseStream(seed={self.seed}, counter={self.counter})"
