"""On-device data augmentation for square images stored flat: random horizontal flips and random shifts by up to
a few pixels (the background coming in), on the whole batch at once (``Ops.shift_flip``, no per-image loop). The random
numbers are counter-based draws of the trainer's ``NoiseStream``, so a run is reproducible for its seed and an
interrupted run resumes with the same draws on any device."""

from __future__ import annotations

from typing import Any


def augment_batch(
    backend: Any, x: Any, noise: Any, max_shift: int = 0, flip: bool = False, side: int = 28, fill: float = 0.0
) -> Any:
    """A (n, side·side) batch: each image of ``x`` mirrored left-right with probability ½ (with ``flip``) and
    shifted by (dy, dx) ∈ [-max_shift, max_shift]², ``fill`` coming in (the value of a black pixel: 0 for
    pixels in [0, 1], -mean/std standardised). ``noise`` is a ``NoiseStream``; the result may live in a buffer
    reused at the next call."""
    if not max_shift and not flip:
        return x
    seed, counter = noise.next()
    return backend.ops.shift_flip(x, int(max_shift), bool(flip), seed, counter, side=side, fill=fill, key="augment")
