"""Every fast ``Ops`` method against the readable base method, one method at a time.

Implementations: ``NumpyOps`` (CPU), ``CupyOps`` on the simulated GPU (its CUDA kernels compiled for the host) and
``CupyOps`` on a real GPU when one is here. The reference is the base ``Ops`` on NumPy float32. Random numbers,
dropout masks and augmentation must agree bit for bit (they are counter-based); arithmetic within float32 rounding.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from fmnist.backend import get_backend
from fmnist.backend.buffered_ops import BufferedOps
from fmnist.backend.cupy_ops import CupyOps
from fmnist.backend.numpy_ops import NumpyOps
from fmnist.backend.ops import Ops


@dataclass
class Case:
    """Inputs of one method call, built on the host; ``outputs`` are the indices of arguments the method fills in
    place (their values after the call are compared too); ``steps`` repeats in-place updates (t = 1, 2, ...)."""

    args: Callable[[np.random.Generator], list[Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[int, ...] = ()
    exact: bool = False
    steps: int = 1
    rtol: float = 2e-5


def _f32(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.normal(size=shape) * scale).astype(np.float32)


def _positive(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(0.01, 0.99, size=shape).astype(np.float32)


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def _labels(rng: np.random.Generator, n: int, k: int = 10) -> np.ndarray:
    return rng.integers(0, k, size=n).astype(np.int64)


_DECAYS = [
    {"weight_decay": 0.0, "decoupled": False},
    {"weight_decay": 0.01, "decoupled": False},
    {"weight_decay": 0.01, "decoupled": True},
]

CASES: dict[str, list[Case]] = {
    "uniform": [Case(lambda r: [(7, 13), 3, 5], exact=True), Case(lambda r: [(1000,), 2**40 + 7, 123456], exact=True)],
    "gather_scale": [
        Case(
            lambda r: [
                r.integers(0, 256, size=(50, 784), dtype=np.uint8),
                r.integers(0, 50, size=16).astype(np.int64),
                1 / (255 * 0.35),
                -0.29 / 0.35,
            ],
            kwargs={"key": "k"},
            rtol=1e-6,
        ),
        Case(lambda r: [r.integers(0, 256, size=(5, 12), dtype=np.uint8), np.array([4, 0, 4]), 1 / 255, 0.0]),
    ],
    "shift_flip": [
        Case(lambda r: [_f32(r, 9, 784), 2, True, 7, 1], kwargs={"key": "k"}, exact=True),
        Case(lambda r: [_f32(r, 4, 36), 1, False, 7, 2], kwargs={"side": 6}, exact=True),
        Case(lambda r: [_f32(r, 4, 64), 0, True, 1, 3], kwargs={"side": 8}, exact=True),
    ],
    "linear": [Case(lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), _f32(r, 16)], kwargs={"key": "k"})],
    "linear_backward": [
        Case(
            lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), _f32(r, 8, 16), _zeros(20, 16), _zeros(16)],
            kwargs={"need_dx": True, "key": "k"},
            outputs=(3, 4),
        ),
        Case(
            lambda r: [_f32(r, 8, 20), _f32(r, 20, 16), _f32(r, 8, 16), _zeros(20, 16), _zeros(16)],
            kwargs={"need_dx": False},
            outputs=(3, 4),
        ),
    ],
    "sigmoid": [Case(lambda r: [np.concatenate([_f32(r, 60, scale=5), np.float32([-1e3, -90, 0, 90, 1e3])])])],
    "sigmoid_backward": [Case(lambda r: [_positive(r, 6, 9), _f32(r, 6, 9)], kwargs={"key": "k"})],
    "tanh": [Case(lambda r: [_f32(r, 6, 9, scale=3)], kwargs={"key": "k"})],
    "tanh_backward": [Case(lambda r: [_positive(r, 6, 9), _f32(r, 6, 9)], kwargs={"key": "k"})],
    "relu": [Case(lambda r: [_f32(r, 6, 9)], kwargs={"key": "k"}, exact=True)],
    "relu_backward": [Case(lambda r: [np.maximum(_f32(r, 6, 9), 0), _f32(r, 6, 9)], kwargs={"key": "k"}, exact=True)],
    "dropout": [
        Case(lambda r: [_f32(r, 32, 50), 0.3, 11, 4], kwargs={"key": "k"}, exact=True),
        Case(lambda r: [_f32(r, 3, 5), 0.5, 0, 1], exact=True),
    ],
    "dropout_backward": [Case(lambda r: [_f32(r, 6, 9), np.float32(2.0) * (_positive(r, 6, 9) > 0.5)], exact=True)],
    "softmax_cross_entropy": [
        Case(lambda r: [_f32(r, 16, 10, scale=3), _labels(r, 16)], kwargs={"key": "k"}),
        Case(lambda r: [_f32(r, 16, 10, scale=3), _labels(r, 16), 0.1]),
        Case(lambda r: [np.float32([[1e4, -1e4, 0], [-1e4, 1e4, 5e3]]), np.array([1, 0])], kwargs={"key": "k"}),
    ],
    "softmax_mse": [Case(lambda r: [_f32(r, 16, 10, scale=3), _labels(r, 16)])],
    "count_correct": [Case(lambda r: [_f32(r, 64, 10), _labels(r, 64)], exact=True)],
    "softmax": [Case(lambda r: [_f32(r, 16, 10, scale=3)])],
    "sgd_update": [
        Case(lambda r: [_f32(r, 300), _f32(r, 300)], kwargs={"lr": 0.1, **d}, outputs=(0,), steps=3) for d in _DECAYS
    ],
    "momentum_update": [
        Case(
            lambda r: [_f32(r, 300), _f32(r, 300), np.zeros(300, np.float32)],
            kwargs={"lr": 0.1, "momentum": 0.8, "nesterov": nesterov, **d},
            outputs=(0, 2),
            steps=3,
        )
        for nesterov in (False, True)
        for d in _DECAYS
    ],
    "rmsprop_update": [
        Case(
            lambda r: [_f32(r, 300), _f32(r, 300), np.zeros(300, np.float32)],
            kwargs={"lr": 0.01, "beta": 0.9, "eps": 1e-7, **d},
            outputs=(0, 2),
            steps=3,
        )
        for d in _DECAYS
    ],
    "adam_update": [
        Case(
            lambda r: [_f32(r, 300), _f32(r, 300), np.zeros(300, np.float32), np.zeros(300, np.float32)],
            kwargs={"lr": 0.01, "beta1": 0.85, "beta2": 0.99, "eps": 1e-7, "nesterov": nesterov, **d},
            outputs=(0, 2, 3),
            steps=3,
        )
        for nesterov in (False, True)
        for d in _DECAYS
    ],
    "clip_grad_norm": [
        Case(lambda r: [[_f32(r, 50) * 10, _f32(r, 7)], 1.0], outputs=(0,)),
        Case(lambda r: [[_f32(r, 50) * 1e-3], 1.0], outputs=(0,)),
    ],
}

IMPLEMENTATIONS = ["NumpyOps", "CupyOps (simulated GPU)", pytest.param("CupyOps (GPU)", marks=pytest.mark.gpu)]


@pytest.fixture(params=IMPLEMENTATIONS)
def fast_backend(request):
    if request.param == "NumpyOps":
        return get_backend("cpu")
    if request.param == "CupyOps (GPU)":
        return request.getfixturevalue("real_gpu_backend")
    return request.getfixturevalue("simulated_gpu_backend")


def _to_device(be: Any, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return be.asarray(value)
    if isinstance(value, list):
        return [_to_device(be, v) for v in value]
    return value


def _to_host(be: Any, value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_to_host(be, v) for v in value]
    if value is None or isinstance(value, int | float):
        return value
    return np.array(be.to_numpy(value))  # a copy: workspaces are reused


def _call(be: Any, method: str, case: Case) -> tuple[list[Any], list[Any]]:
    """(results, host inputs after the call) of ``case`` on ``be``'s ops."""
    host_args = case.args(np.random.default_rng(0))
    args = _to_device(be, host_args)
    results = []
    for t in range(1, case.steps + 1):
        kwargs = {**case.kwargs, "t": t} if method == "adam_update" else case.kwargs
        results.append(_to_host(be, getattr(be.ops, method)(*args, **kwargs)))
    return results, _to_host(be, args)


def _cases() -> list[tuple[str, int]]:
    return [(method, i) for method, cases in CASES.items() for i in range(len(cases))]


@pytest.mark.parametrize(("method", "index"), _cases(), ids=[f"{m}-{i}" for m, i in _cases()])
def test_override_matches_the_readable_method(fast_backend, method, index):
    case = CASES[method][index]
    reference = get_backend("cpu")
    reference.fast = False
    assert type(reference.ops) is Ops
    expected, expected_args = _call(reference, method, case)
    got, got_args = _call(fast_backend, method, case)
    compare = _exact if case.exact else _close(case.rtol)
    compare(got, expected)
    for i in case.outputs:
        compare(got_args[i], expected_args[i])
    untouched = [i for i in range(len(expected_args)) if i not in case.outputs]
    original = _to_host(reference, _to_device(reference, case.args(np.random.default_rng(0))))
    for i in untouched:  # methods never modify their inputs
        _exact(got_args[i], original[i])


def _exact(got: Any, expected: Any) -> None:
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            _exact(g, e)
    elif isinstance(expected, np.ndarray):
        assert got.shape == expected.shape
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


def _close(rtol: float) -> Callable[[Any, Any], None]:
    def compare(got: Any, expected: Any) -> None:
        if isinstance(expected, list):
            assert len(got) == len(expected)
            for g, e in zip(got, expected, strict=True):
                compare(g, e)
        elif isinstance(expected, np.ndarray):
            assert got.shape == expected.shape
            assert got.dtype == expected.dtype
            scale = max(1.0, float(np.abs(expected).max(initial=0)))
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)
        else:
            assert got == expected

    return compare


@pytest.mark.parametrize("cls", [NumpyOps, CupyOps])
def test_every_override_has_a_parity_case(cls):
    overridden = {
        name
        for klass in cls.__mro__
        if klass is not Ops and issubclass(klass, Ops)
        for name, value in vars(klass).items()
        if callable(value) and not name.startswith("_") and hasattr(Ops, name)
    }
    assert overridden, "the fast class overrides nothing?"
    assert sorted(overridden - set(CASES)) == []


def test_override_signatures_match_the_base():
    for cls in (BufferedOps, NumpyOps, CupyOps):
        for name, value in vars(cls).items():
            if callable(value) and not name.startswith("_") and hasattr(Ops, name) and value is not getattr(Ops, name):
                assert inspect.signature(value) == inspect.signature(getattr(Ops, name)), f"{cls.__name__}.{name}"
