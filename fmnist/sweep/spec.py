"""W&B-style sweep files: ``method``, ``metric``, ``parameters`` and ``early_terminate``, checked and normalised.

Parameter names are ``fmnist train`` option names; DA6401 short names (``lr``, ``nhl``, ``sz``, ``w_d``...) and
dashed long names (``hidden-sizes``) are accepted and mapped to ``TrainConfig`` fields.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmnist.training.config import ConfigError, TrainConfig

METHODS = ("grid", "random", "bayes")
METRICS = {"val_accuracy": "maximize", "val_loss": "minimize", "train_accuracy": "maximize", "train_loss": "minimize"}
DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "log_uniform_values", "log_uniform", "q_uniform")

ALIASES = {
    "wp": "wandb_project",
    "we": "wandb_entity",
    "d": "dataset",
    "e": "epochs",
    "b": "batch_size",
    "l": "loss",
    "o": "optimizer",
    "lr": "learning_rate",
    "m": "momentum",
    "eps": "epsilon",
    "w_d": "weight_decay",
    "w_i": "weight_init",
    "nhl": "num_layers",
    "sz": "hidden_size",
    "a": "activation",
    "clip_grad_norm": "max_grad_norm",
}
SHORT = {
    "num_layers": "hl",
    "hidden_size": "sz",
    "hidden_sizes": "hs",
    "batch_size": "bs",
    "activation": "act",
    "optimizer": "opt",
    "learning_rate": "lr",
    "weight_decay": "wd",
    "weight_init": "wi",
    "epochs": "ep",
    "loss": "loss",
    "dropout": "do",
    "momentum": "mom",
}
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}


class SweepError(ValueError):
    """An invalid sweep file; the message names the key and what is wrong."""


def config_name(name: str) -> str:
    """The ``TrainConfig`` field for an option name (``-lr``, ``learning_rate``, ``hidden-sizes``...)."""
    key = name.lstrip("-").replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in FIELDS:
        raise SweepError(f"unknown parameter {name!r}; use fmnist train option names (e.g. learning_rate, -lr)")
    return key


@dataclass(frozen=True)
class Param:
    """One swept or fixed parameter."""

    name: str
    distribution: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    q: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file."""

    method: str
    metric: str
    goal: str
    params: tuple[Param, ...]
    hyperband: dict[str, int] | None = None
    run_cap: int | None = None
    name: str = "sweep"
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return self.goal

    @property
    def searched(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.distribution != "constant")

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a grid sweep, in a fixed order."""
        names = [p.name for p in self.searched]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(p.values for p in self.searched))]


def _number(value: Any, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SweepError(f"parameters.{key}: {value!r} is not a number") from None


def _param(key: str, body: Any) -> Param:
    name = config_name(key)
    if not isinstance(body, dict):
        raise SweepError(f"parameters.{key} must be a mapping such as {{values: [...]}} or {{min: .., max: ..}}")
    if "value" in body:
        return Param(name, "constant", (_tuple_if_list(body["value"]),))
    if "values" in body:
        values = body["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"parameters.{key}.values must be a non-empty list")
        return Param(name, "categorical", tuple(_tuple_if_list(v) for v in values))
    if "min" in body and "max" in body:
        low, high = _number(body["min"], key), _number(body["max"], key)
        ints = isinstance(body["min"], int) and isinstance(body["max"], int)
        distribution = body.get("distribution", "int_uniform" if ints else "uniform")
        if distribution not in DISTRIBUTIONS[2:]:
            raise SweepError(
                f"parameters.{key}.distribution {distribution!r} is not one of {', '.join(DISTRIBUTIONS[2:])}"
            )
        if not low < high:
            raise SweepError(f"parameters.{key}: min must be < max")
        if distribution == "log_uniform":  # W&B: min and max are natural-log exponents
            low, high, distribution = math.exp(low), math.exp(high), "log_uniform_values"
        if distribution == "log_uniform_values" and low <= 0:
            raise SweepError(f"parameters.{key}: log_uniform_values needs min > 0")
        q = _number(body["q"], key) if "q" in body else None
        return Param(name, distribution, low=low, high=high, q=q)
    raise SweepError(f"parameters.{key} needs value, values, or min and max")


def _tuple_if_list(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def parse_sweep(raw: dict[str, Any], name: str = "sweep") -> SweepSpec:
    """Check and normalise a sweep mapping (as loaded from YAML or JSON)."""
    if not isinstance(raw, dict):
        raise SweepError("a sweep file must be a mapping with method, metric and parameters")
    method = str(raw.get("method", "random")).lower()
    if method not in METHODS:
        raise SweepError(f"method {method!r} is not one of {', '.join(METHODS)}")
    metric_raw = raw.get("metric", {"name": "val_accuracy"})
    metric = str(metric_raw.get("name", "val_accuracy")) if isinstance(metric_raw, dict) else str(metric_raw)
    if metric not in METRICS:
        raise SweepError(f"metric.name {metric!r} is not one of {', '.join(METRICS)}")
    goal = str(metric_raw.get("goal", METRICS[metric])).lower() if isinstance(metric_raw, dict) else METRICS[metric]
    if goal not in ("maximize", "minimize"):
        raise SweepError(f"metric.goal {goal!r} is not maximize or minimize")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError("parameters must map option names to {values|value|min/max}")
    params = tuple(_param(key, body) for key, body in parameters.items())
    if len({p.name for p in params}) != len(params):
        raise SweepError("a parameter is given twice (under two of its names)")
    if method == "grid" and any(p.distribution not in ("constant", "categorical") for p in params):
        raise SweepError("method grid needs every parameter as values or value (no min/max ranges)")
    hyperband = None
    early = raw.get("early_terminate")
    if early:
        if not isinstance(early, dict) or str(early.get("type", "")).lower() != "hyperband":
            raise SweepError("early_terminate supports {type: hyperband, min_iter: N, eta: N}")
        hyperband = {"min_iter": int(early.get("min_iter", 1)), "eta": int(early.get("eta", 3))}
    run_cap = raw.get("run_cap")
    fixed = {p.name: p.values[0] for p in params if p.distribution == "constant"}
    return SweepSpec(method, metric, goal, params, hyperband, int(run_cap) if run_cap else None, name, fixed)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file (YAML or JSON)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    raw = load_mapping(path)
    return parse_sweep(raw, name=path.stem)


def load_mapping(path: Path) -> Any:
    """A YAML or JSON file as Python data (YAML's 1e-4 style numbers become floats)."""
    import yaml

    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SweepError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({err})") from err
    return _floats(data)


def _floats(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_floats(v) for v in data]
    if isinstance(data, str):
        try:
            return float(data) if any(c in data.lower() for c in ".e") and data.strip()[0] in "0123456789.-+" else data
        except ValueError:
            return data
    return data


def config_from_mapping(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A ``TrainConfig`` from option names and values (e.g. a trial's parameters or a --config file)."""
    merged = base.to_dict() if base is not None else {}
    merged.pop("extra", None)
    for key, value in values.items():
        name = config_name(key)
        if name == "hidden_sizes" and isinstance(value, str):
            value = tuple(int(v) for v in value.split(",") if v.strip())
        merged[name] = tuple(value) if isinstance(value, list) else value
    try:
        return TrainConfig.from_dict(merged)
    except TypeError as err:
        raise ConfigError(str(err)) from err


def run_name(trial_number: int, params: dict[str, Any]) -> str:
    """A readable run directory name from the key hyperparameters, e.g. ``t007_hl-3_bs-16_act-tanh_opt-adam``."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        if isinstance(value, tuple | list):
            return "x".join(map(str, value))
        return str(value)

    parts = [f"{SHORT.get(k, k)}-{fmt(v)}" for k, v in params.items()]
    return f"t{trial_number:03d}" + ("_" + "_".join(parts) if parts else "")
