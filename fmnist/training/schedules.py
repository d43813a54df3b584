"""Learning-rate schedules: a multiplier of the base learning rate as a function of the step (host floats)."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant", "cosine")


def lr_factor(name: str, total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """The multiplier for step t = 1, 2, ... of a run of ``total_steps`` steps.

    ``constant``: 1. ``cosine``: linear warm-up over ``warmup_steps``, then ½(1 + cos(π·p)) with p the fraction
    of the remaining steps done, decaying to 0 at the last step.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)

    def constant(t: int) -> float:
        return min(1.0, t / warmup_steps) if warmup_steps and t <= warmup_steps else 1.0

    def cosine(t: int) -> float:
        if warmup_steps and t <= warmup_steps:
            return t / warmup_steps
        progress = (t - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return cosine if name == "cosine" else constant
