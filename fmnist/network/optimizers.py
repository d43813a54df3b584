"""Optimizers over a list of ``Parameter``s, with state created once and updated in place.

When the parameters are exactly the views of one ``FlatParameters`` buffer (as ``MLP.parameters()`` returns),
the update runs once over the whole flat buffer; otherwise once per parameter. The maths is the same either way.

Notation: g is the gradient plus L2 weight decay (g = ∇L + λθ), t the step count starting at 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from fmnist.backend.compat import array_namespace
from fmnist.network._names import lookup
from fmnist.network.parameters import Parameter


class Optimizer:
    """Base class: holds (data, grad) slots, the step count ``t`` and per-slot state arrays.

    Subclasses name their state arrays in ``state_names`` and implement ``update(xp, data, g, state)``, the
    readable reference. Over one model's flat buffer, ``step()`` runs the backend's fused kernel for ``rule``
    instead (one pass, no temporaries) when the backend has one; set ``kernels = None`` for the reference path.
    """

    state_names: tuple[str, ...] = ()
    rule = ""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        max_grad_norm: float | None = None,
    ):
        params = list(params)
        if not params:
            raise ValueError("the optimizer got no parameters")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.params = params
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        names = list(inspect.signature(type(self).__init__).parameters)
        names += ["decoupled_weight_decay", "max_grad_norm"]
        self._hyper_names = tuple(dict.fromkeys(n for n in names if n not in ("self", "params", "options")))
        self.t = 0
        owner = params[0].owner
        self.kernels = None
        if owner is not None and [id(p) for p in owner.params] == [id(p) for p in params]:
            self.slots = [(owner.data, owner.grad)]  # one update over the flat buffers
            self.kernels = owner.backend.kernels
        else:
            self.slots = [(p.data, p.grad) for p in params]
        self.xp = array_namespace(self.slots[0][0])
        self.state = [{name: self.xp.zeros_like(data) for name in self.state_names} for data, _ in self.slots]
        self._kernel_hyper = tuple(
            n for n in self._hyper_names if n in ("lr", "momentum", "beta", "beta1", "beta2", "eps")
        )

    def step(self) -> None:
        """Apply one update to every parameter from its current ``grad``.

        Before the rule: gradient-norm clipping (g ← g·min(1, c/‖g‖) over all parameters together) and, with
        ``decoupled_weight_decay`` (AdamW-style), θ ← θ(1 - lr·λ) instead of adding λθ to the gradient.
        """
        self.t += 1
        if self.max_grad_norm is not None:
            self._clip_gradients()
        l2 = self.weight_decay
        if self.decoupled_weight_decay and l2:
            for data, _ in self.slots:
                data *= 1.0 - self.lr * l2
            l2 = 0.0
        if self.kernels is not None and len(self.slots) == 1:
            (data, grad), state = self.slots[0], self.state[0]
            hyper = {name: float(getattr(self, name)) for name in self._kernel_hyper}
            hyper["weight_decay"] = l2
            self.kernels.optimizer_step(self.rule, data, grad, [state[n] for n in self.state_names], hyper, self.t)
            return
        for (data, grad), state in zip(self.slots, self.state, strict=True):
            g = grad + l2 * data if l2 else grad
            self.update(self.xp, data, g, state)

    def _clip_gradients(self) -> None:
        xp = self.xp
        squares = [xp.sum(grad * grad) for _, grad in self.slots]
        norm = xp.sqrt(sum(squares[1:], squares[0]))
        scale = xp.minimum(1.0 / (norm + 1e-6) * self.max_grad_norm, 1.0)  # a device scalar: no host sync
        for _, grad in self.slots:
            grad *= scale

    def update(self, xp: Any, data: Any, g: Any, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every gradient to zero (``MLP.backward`` overwrites them, so training loops need not call this)."""
        for _, grad in self.slots:
            grad[...] = 0.0

    def hyperparameters(self) -> dict[str, float]:
        """The constructor's hyperparameters by name, for run records."""
        return {name: getattr(self, name) for name in self._hyper_names}

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


class SGD(Optimizer):
    """θ ← θ - lr·g."""

    rule = "sgd"

    def update(self, xp: Any, data: Any, g: Any, state: dict[str, Any]) -> None:
        data -= self.lr * g


class Momentum(Optimizer):
    """b ← μ·b + g;  θ ← θ - lr·b   (torch.optim.SGD with momentum=μ, dampening=0)."""

    rule = "momentum"

    state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        **options: Any,
    ):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        super().__init__(params, lr=lr, weight_decay=weight_decay, **options)

    def update(self, xp: Any, data: Any, g: Any, state: dict[str, Any]) -> None:
        buf = state["momentum_buffer"]
        buf *= self.momentum
        buf += g
        data -= self.lr * self.direction(g, buf)

    def direction(self, g: Any, buf: Any) -> Any:
        return buf


class Nesterov(Momentum):
    """b ← μ·b + g;  θ ← θ - lr·(g + μ·b)   (torch.optim.SGD with nesterov=True): the look-ahead gradient step."""

    rule = "nag"

    def direction(self, g: Any, buf: Any) -> Any:
        return g + self.momentum * buf


class RMSprop(Optimizer):
    """v ← β·v + (1-β)·g²;  θ ← θ - lr·g / (√v + ε)   (torch.optim.RMSprop with alpha=β)."""

    rule = "rmsprop"

    state_names = ("square_avg",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        beta: float = 0.9,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        **options: Any,
    ):
        _check_beta("beta", beta)
        _check_eps(eps)
        self.beta, self.eps = float(beta), float(eps)
        super().__init__(params, lr=lr, weight_decay=weight_decay, **options)

    def update(self, xp: Any, data: Any, g: Any, state: dict[str, Any]) -> None:
        v = state["square_avg"]
        v *= self.beta
        v += (1.0 - self.beta) * (g * g)
        data -= self.lr * g / (xp.sqrt(v) + self.eps)


class Adam(Optimizer):
    """m ← β₁m + (1-β₁)g;  v ← β₂v + (1-β₂)g²;  θ ← θ - lr·m̂ / (√v̂ + ε), m̂ = m/(1-β₁ᵗ), v̂ = v/(1-β₂ᵗ)."""

    rule = "adam"

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        **options: Any,
    ):
        _check_beta("beta1", beta1)
        _check_beta("beta2", beta2)
        _check_eps(eps)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        super().__init__(params, lr=lr, weight_decay=weight_decay, **options)

    def update(self, xp: Any, data: Any, g: Any, state: dict[str, Any]) -> None:
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        # bias corrections are host floats from the host step count: no device sync
        bc1 = 1.0 - self.beta1**self.t
        bc2 = 1.0 - self.beta2**self.t
        data -= self.lr * self.numerator(m / bc1, g, bc1) / (xp.sqrt(v / bc2) + self.eps)

    def numerator(self, m_hat: Any, g: Any, bc1: float) -> Any:
        return m_hat


class Nadam(Adam):
    """Adam with Nesterov momentum: θ ← θ - lr·(β₁m̂ + (1-β₁)·g/(1-β₁ᵗ)) / (√v̂ + ε)."""

    rule = "nadam"

    def numerator(self, m_hat: Any, g: Any, bc1: float) -> Any:
        return self.beta1 * m_hat + ((1.0 - self.beta1) / bc1) * g


def _check_beta(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def _check_eps(eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nag": Nesterov,
    "rmsprop": RMSprop,
    "adam": Adam,
    "nadam": Nadam,
}

HYPERPARAMETERS = (
    "lr",
    "momentum",
    "beta",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "decoupled_weight_decay",
    "max_grad_norm",
)


def get_optimizer(name: str, params: Iterable[Parameter], **hyperparameters: float) -> Optimizer:
    """Build the optimizer called ``name`` (``sgd momentum nag rmsprop adam nadam``) over ``params``.

    Any of ``lr momentum beta beta1 beta2 eps weight_decay`` (``epsilon`` is accepted for ``eps``) may be given;
    those the chosen rule does not use are ignored, so one set of command-line options fits every optimizer.

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
    accepted = set(inspect.signature(cls.__init__).parameters) | {"decoupled_weight_decay", "max_grad_norm"}
    return cls(params, **{k: v for k, v in hyperparameters.items() if k in accepted})
