"""Optimizers over a list of ``Parameter``s, with state created once and updated in place.

Each rule's hyperparameters and their defaults are declared once, in its record in ``fmnist.backend.ops``
(``SgdStep``, ``MomentumStep``, ``RmspropStep``, ``AdamStep``), and its step is one call of its ``Ops`` update
method (where the formula lives) with that record. When the parameters are exactly the views of one
``FlatParameters`` buffer (as ``model.parameters()`` returns), that call covers the whole model in one pass;
otherwise it runs once per parameter. The maths is the same either way.

Notation: g is the gradient plus L2 weight decay (g = ∇L + λθ), t the step count starting at 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar

from fmnist.backend import ops_for
from fmnist.backend.ops import AdamStep, MomentumStep, RmspropStep, SgdStep
from fmnist.names import lookup
from fmnist.network.parameters import Parameter

# Every hyperparameter any rule takes, with its valid range (checked once, at construction).
RANGES: dict[str, tuple[str, Any]] = {
    "lr": ("must be > 0", lambda v: v > 0),
    "momentum": ("must be in [0, 1)", lambda v: 0 <= v < 1),
    "beta": ("must be in [0, 1)", lambda v: 0 <= v < 1),
    "beta1": ("must be in [0, 1)", lambda v: 0 <= v < 1),
    "beta2": ("must be in [0, 1)", lambda v: 0 <= v < 1),
    "eps": ("must be > 0", lambda v: v > 0),
    "weight_decay": ("must be >= 0", lambda v: v >= 0),
}


class Optimizer:
    """Base class: holds (data, grad) slots, the step count ``t`` and per-slot state arrays.

    A rule names its hyperparameter record (``hyper``, from ``fmnist.backend.ops``: the hyperparameters and their
    defaults are declared there, once), its state arrays (``state_names``) and ``update``, one call of its ``Ops``
    method. Every rule also takes ``weight_decay`` (L2 added to the gradient, or with ``decoupled_weight_decay``
    AdamW-style shrinking θ ← θ(1 - lr·λ)) and ``max_grad_norm`` (global clipping).
    """

    hyper: ClassVar[type[SgdStep]] = SgdStep
    state_names: ClassVar[tuple[str, ...]] = ()
    nesterov: ClassVar[bool] = False
    defaults: ClassVar[dict[str, float]]  # the rule's hyperparameters a user sets, with their defaults

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.defaults = _defaults(cls.hyper)

    def __init__(
        self,
        params: Iterable[Parameter],
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        max_grad_norm: float | None = None,
        **hyperparameters: float,
    ):
        params = list(params)
        if not params:
            raise ValueError("the optimizer got no parameters")
        unknown = sorted(set(hyperparameters) - set(self.defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} takes no hyperparameter(s) {unknown}; valid: {list(self.defaults)}")
        values = {**self.defaults, **hyperparameters, "weight_decay": weight_decay}
        for name, value in values.items():
            message, valid = RANGES[name]
            if not valid(value):
                raise ValueError(f"{name} {message}, got {value}")
            setattr(self, name, float(value))
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.params = params
        self.t = 0
        owner = params[0].owner
        if owner is not None and [id(p) for p in owner.params] == [id(p) for p in params]:
            self.slots = [(owner.data, owner.grad)]  # one update over the flat buffers
            self.ops = owner.backend.ops
        else:
            self.slots = [(p.data, p.grad) for p in params]
            self.ops = ops_for(params[0].data)
        xp = self.ops.xp
        self.state = [{name: xp.zeros_like(data) for name in self.state_names} for data, _ in self.slots]

    def step_hyperparameters(self) -> SgdStep:
        """This step's record for the rule's ``Ops`` method (host values: the learning rate as scheduled now)."""
        values = {name: getattr(self, name) for name in self.defaults}
        fields = {f.name for f in dataclasses.fields(self.hyper)}
        extra = {k: v for k, v in (("nesterov", self.nesterov), ("t", self.t)) if k in fields}
        return self.hyper(**values, weight_decay=self.weight_decay, decoupled=self.decoupled_weight_decay, **extra)

    def step(self) -> None:
        """Apply one update to every parameter from its current ``grad`` (clipped first when asked)."""
        self.t += 1
        if self.max_grad_norm is not None:
            self.ops.clip_grad_norm([grad for _, grad in self.slots], self.max_grad_norm)
        hp = self.step_hyperparameters()
        for (data, grad), state in zip(self.slots, self.state, strict=True):
            self.update(data, grad, state, hp)

    def update(self, data: Any, grad: Any, state: dict[str, Any], hp: Any) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every gradient to zero (``model.backward`` overwrites them, so training loops need not call this)."""
        for _, grad in self.slots:
            grad[...] = 0.0

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters by name, for run records."""
        rule = {name: getattr(self, name) for name in self.defaults}
        return {
            **rule,
            "weight_decay": self.weight_decay,
            "decoupled_weight_decay": self.decoupled_weight_decay,
            "max_grad_norm": self.max_grad_norm,
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"t": step, "<slot>.<name>": array, ...}``: everything needed to resume exactly."""
        out: dict[str, Any] = {"t": self.t}
        for i, state in enumerate(self.state):
            out.update({f"{i}.{name}": arr for name, arr in state.items()})
        return out

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore ``t`` and copy saved state arrays (already on this device) in place; shapes must match."""
        keys = {f"{i}.{name}" for i, state in enumerate(self.state) for name in state}
        if set(saved) - {"t"} != keys:
            raise ValueError(f"optimizer state does not match: expected {sorted(keys)}, got {sorted(saved)}")
        for i, state in enumerate(self.state):
            for name, arr in state.items():
                value = saved[f"{i}.{name}"]
                if tuple(value.shape) != tuple(arr.shape):
                    raise ValueError(f"optimizer state {i}.{name} has shape {value.shape}, expected {arr.shape}")
                arr[...] = value
        self.t = int(saved["t"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


def _defaults(hyper: type[SgdStep]) -> dict[str, float]:
    """The hyperparameters a user sets, with their defaults, as the rule's record declares them."""
    return {f.name: f.default for f in dataclasses.fields(hyper) if f.name in RANGES and f.name != "weight_decay"}


Optimizer.defaults = _defaults(SgdStep)


class SGD(Optimizer):
    """θ ← θ - lr·g   (torch.optim.SGD)."""

    def update(self, data: Any, grad: Any, state: dict[str, Any], hp: Any) -> None:
        self.ops.sgd_update(data, grad, hp)


class Momentum(Optimizer):
    """b ← μ·b + g;  θ ← θ - lr·b   (torch.optim.SGD with momentum=μ, dampening=0)."""

    hyper = MomentumStep
    state_names = ("momentum_buffer",)

    def update(self, data: Any, grad: Any, state: dict[str, Any], hp: Any) -> None:
        self.ops.momentum_update(data, grad, state["momentum_buffer"], hp)


class Nesterov(Momentum):
    """b ← μ·b + g;  θ ← θ - lr·(g + μ·b)   (torch.optim.SGD with nesterov=True): the look-ahead gradient step."""

    nesterov = True


class RMSprop(Optimizer):
    """v ← β·v + (1-β)·g²;  θ ← θ - lr·g / (√v + ε)   (torch.optim.RMSprop with alpha=β)."""

    hyper = RmspropStep
    state_names = ("square_avg",)

    def update(self, data: Any, grad: Any, state: dict[str, Any], hp: Any) -> None:
        self.ops.rmsprop_update(data, grad, state["square_avg"], hp)


class Adam(Optimizer):
    """m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²;  θ ← θ - lr·m̂ / (√v̂ + ε), m̂ = m/(1-β₁ᵗ), v̂ = v/(1-β₂ᵗ)."""

    hyper = AdamStep
    state_names = ("exp_avg", "exp_avg_sq")

    def update(self, data: Any, grad: Any, state: dict[str, Any], hp: Any) -> None:
        self.ops.adam_update(data, grad, state["exp_avg"], state["exp_avg_sq"], hp)


class Nadam(Adam):
    """Adam with Nesterov momentum: θ ← θ - lr·(β₁m̂ + (1-β₁)·g/(1-β₁ᵗ)) / (√v̂ + ε)."""

    nesterov = True


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nag": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "nadam": Nadam,
}

COMMON = ("weight_decay", "decoupled_weight_decay", "max_grad_norm")
HYPERPARAMETERS = tuple(dict.fromkeys(name for cls in OPTIMIZERS.values() for name in cls.defaults)) + COMMON


def get_optimizer(name: str, params: Iterable[Parameter], **hyperparameters: float) -> Optimizer:
    """Build the optimizer called ``name`` (``sgd momentum nag rmsprop adam nadam``) over ``params``.

    Any of ``lr momentum beta beta1 beta2 eps weight_decay decoupled_weight_decay max_grad_norm`` (``epsilon`` is
    accepted for ``eps``) may be given; those the chosen rule does not use are ignored, so one set of command-line
    options fits every optimizer.

    Raises:
        ValueError: unknown optimizer name or an invalid hyperparameter value.
        TypeError: a keyword that is no optimizer hyperparameter.
    """
    cls = lookup("optimizer", name, OPTIMIZERS)
    if "epsilon" in hyperparameters:
        hyperparameters["eps"] = hyperparameters.pop("epsilon")
    unknown = set(hyperparameters) - set(HYPERPARAMETERS)
    if unknown:
        raise TypeError(f"unknown optimizer hyperparameter(s) {sorted(unknown)}; valid: {', '.join(HYPERPARAMETERS)}")
    accepted = set(cls.defaults) | set(COMMON)
    return cls(params, **{k: v for k, v in hyperparameters.items() if k in accepted})
