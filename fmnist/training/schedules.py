"""Learning-rate schedules: a multiplier of the base learning rate as a function of the step (host floats)."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant", "cosine", "step", "onecycle")
ONECYCLE_RISE, ONECYCLE_START, ONECYCLE_END = 0.3, 1 / 25, 1 / 25 / 1e4  # PyTorch OneCycleLR's defaults


def lr_factor(
    name: str, total_steps: int, warmup_steps: int = 0, step_every: int = 0, gamma: float = 0.1
) -> Callable[[int], float]:
    """The multiplier for step t = 1, 2, ... of a run of ``total_steps`` steps.

    All schedules but ``onecycle`` start with a linear warm-up over ``warmup_steps``. ``constant``: 1.
    ``cosine``: ½(1 + cos(π·p)) with p the fraction of the remaining steps done, decaying to 0 at the last step.
    ``step``: ``gamma`` to the power of the number of whole ``step_every`` periods done. ``onecycle`` (PyTorch's
    ``OneCycleLR``): a cosine rise from 1/25 to 1 over the first 30% of the steps, then a cosine fall to 1/25/10⁴.
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

    def step(t: int) -> float:
        if warmup_steps and t <= warmup_steps:
            return t / warmup_steps
        return gamma ** ((t - 1) // step_every) if step_every > 0 else 1.0

    peak = float(ONECYCLE_RISE * total_steps) - 1  # the step index (from 0) of the highest rate, as PyTorch's

    def onecycle(t: int) -> float:
        i = min(t, total_steps) - 1
        if i <= peak:
            low, q = ONECYCLE_START, i / max(peak, 1.0)
        else:
            low, q = ONECYCLE_END, 1.0 - (i - peak) / max(total_steps - 1 - peak, 1.0)
        return low + (1.0 - low) * 0.5 * (1.0 - math.cos(math.pi * q))

    return {"cosine": cosine, "step": step, "constant": constant, "onecycle": onecycle}[name]
