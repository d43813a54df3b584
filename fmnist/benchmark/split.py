"""Where a step's time goes: each ``Ops`` call timed in a profiled pass (``fmnist.backend.profile``) and put in one
of a few categories, so that a row of ``fmnist bench`` says what its time is spent on."""

from __future__ import annotations

from typing import Any

from fmnist.backend.profile import SPANS

# The categories, in the order the table shows them, with their column heading and meaning.
CATEGORIES: dict[str, tuple[str, str]] = {
    "conv_gemm": ("conv GEMM", "the convolutions' matrix products"),
    "conv_data": ("conv data", "the rest of the convolutions: padding, im2col, col2im, Winograd transforms, layouts"),
    "conv": ("conv", "whole convolution calls, where the device's Ops does not mark its GEMMs (conv_gemm)"),
    "gemm": ("GEMM", "the dense layers' matrix products (with their bias terms)"),
    "elementwise": ("elem", "activations, batch norm, pooling, dropout, the loss and its gradient"),
    "optimizer": ("optim", "the optimizer's update"),
    "data": ("data", "the batch's gather, scaling and augmentation"),
    "other": ("other", "the rest: Python, the training loop, labels, host reads, the profiler itself"),
}

# The category of each ``Ops`` method, by the start of its name (fused methods such as ``linear_relu`` count where
# their matrix product is; methods not matched are elementwise); a span opened inside a method
# (``fmnist.backend.profile.SPANS``) counts under its own name.
OP_PREFIXES: tuple[tuple[str, str], ...] = (
    ("conv2d", "conv"),
    ("im2col", "conv_data"),
    ("col2im", "conv_data"),
    ("to_layout", "conv_data"),
    ("from_layout", "conv_data"),
    ("linear", "gemm"),
    ("gather", "data"),
    ("shift_flip", "data"),
    ("clip_grad_norm", "optimizer"),
    ("nchw_shape", "other"),
)


def category(name: str) -> str:
    """The category of a span: a span name (``SPANS``, ``other``) or an ``Ops`` method's name."""
    if name in SPANS or name == "other":
        return name
    if name.endswith("_update"):  # sgd_update, adam_update...: the optimizer rules
        return "optimizer"
    return next((kind for prefix, kind in OP_PREFIXES if name.startswith(prefix)), "elementwise")


def summarize(seconds: dict[str, float], calls: dict[str, int], steps: int) -> dict[str, Any]:
    """A profiled pass of ``steps`` steps as milliseconds per step: the whole step, each category (they add up to
    the step) and each span name with its calls per step. ``conv_split`` says whether the convolutions' GEMMs were
    told from their data movement: where the device's ``Ops`` opens ``conv_gemm`` spans or credits time to it (the
    CPU's kernels time their own GEMMs), the rest of its convolution calls counts as ``conv_data``; where it does
    not, whole calls count as ``conv``."""
    per_step = {name: 1000.0 * s / steps for name, s in seconds.items()}
    categories = dict.fromkeys(CATEGORIES, 0.0)
    for name, ms in per_step.items():
        categories[category(name)] += ms
    split = seconds.get("conv_gemm", 0.0) > 0
    if split:  # the device's Ops marks its convolutions' GEMMs: the rest of a convolution call moves data
        categories["conv_data"] += categories["conv"]
        categories["conv"] = 0.0
    step_ms = sum(categories.values())
    return {
        "steps": steps,
        "step_ms": step_ms,
        "categories_ms": categories,
        "shares": {k: (v / step_ms if step_ms > 0 else 0.0) for k, v in categories.items()},
        "ops": {
            name: {"ms": ms, "calls": calls.get(name, 0) / steps, "category": category(name)}
            for name, ms in sorted(per_step.items(), key=lambda item: -item[1])
        },
        "conv_split": split,
    }
