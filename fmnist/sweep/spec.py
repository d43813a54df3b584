"""W&B-style sweep files: ``method``, ``metric``, ``parameters`` and ``early_terminate``, checked and normalised.

Parameter names and values go through ``fmnist.names`` when the file is read: ``fmnist train`` option names, the
DA6401 short names (``lr``, ``nhl``, ``sz``, ``w_d``...), dashed long names (``hidden-sizes``) and the names course
sweep files use (``hidden_layers``, ``weight_initialization``...) map to ``TrainConfig`` fields, and values to their
canonical spelling (``nesterov`` -> ``nag``), so a study stores canonical values and ``[nag, nesterov]`` is one
choice. Names with two meanings (``gamma``, ``decay``) are read by the file's other parameters or refused, a list
of widths under ``hidden_size`` is ``hidden_sizes``, architecture constants (``input_size: 784``) are checked, and W&B
asked for by the file (``wandb_project``, a top-level ``project``, a ``command:`` passing ``--wandb_project``) is
recorded in ``SweepSpec.wandb``. What was assumed is said in ``SweepSpec.notes``. ``validate`` then checks every
value a sampler can draw before the first trial.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fmnist import names
from fmnist.network.optimizers import OPTIMIZERS
from fmnist.training.config import (
    CHOICES,
    FIELD_TYPES,
    OPTIMIZER_FIELDS,
    ConfigError,
    TrainConfig,
    coerce,
    load_mapping,
    option_name,
)

METHODS = ("grid", "random", "bayes")
METRICS = names.METRICS
DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "log_uniform_values", "log_uniform", "q_uniform")
SHORT = names.SHORT  # short parameter names for run directories and narrow tables
COMBINATIONS_CHECKED = 20_000  # larger spaces: every value, and every pair of values, instead of every combination
CNN_ONLY = ("conv_channels", "convs_per_block", "kernel_size", "batch_norm", "conv_dropout")
WANDB_FIELDS = ("wandb", "wandb_project", "wandb_entity")


class SweepError(ValueError):
    """An invalid sweep file; the message names the key and what is wrong."""


def config_name(name: str) -> str:
    """The ``TrainConfig`` field for a sweep parameter name (``-lr``, ``learning_rate``, ``hidden-sizes``,
    ``hidden_layers``...)."""
    try:
        return option_name(name)
    except ConfigError as err:
        raise SweepError(str(err)) from None


@dataclass(frozen=True)
class Param:
    """One swept or fixed parameter, with canonical name and values."""

    name: str
    distribution: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    q: float | None = None

    def drawable(self) -> tuple[Any, ...]:
        """What a sampler can draw that validation must see: every value, or both ends of a range."""
        if self.distribution in ("constant", "categorical"):
            return self.values
        if self.distribution == "int_uniform":
            return (int(self.low), int(self.high))  # type: ignore[arg-type]
        return (self.low, self.high)


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
    best: bool = False  # a trial's value is its best epoch's (best_val_accuracy, val/max_acc), not its last epoch's
    notes: tuple[str, ...] = ()  # what the file left to fmnist to read, one line each (printed before the trials)
    wandb: str | None = None  # what in the file asks for W&B logging (e.g. "parameters.wandb_project"), or None

    @property
    def direction(self) -> str:
        return self.goal

    @property
    def searched(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.distribution != "constant")

    def describe(self) -> dict[str, Any]:
        """The sweep as read (canonical names and values), as plain data: for ``sweep.json`` and reports."""
        parameters: dict[str, Any] = {}
        for p in self.params:
            if p.distribution == "constant":
                parameters[p.name] = {"value": _plain(p.values[0])}
            elif p.distribution == "categorical":
                parameters[p.name] = {"values": [_plain(v) for v in p.values]}
            else:
                parameters[p.name] = {"distribution": p.distribution, "min": p.low, "max": p.high}
                if p.q is not None:
                    parameters[p.name]["q"] = p.q
        out: dict[str, Any] = {"method": self.method, "metric": self.metric_record()}
        out["parameters"] = parameters
        if self.hyperband:
            out["early_terminate"] = {"type": "hyperband", **self.hyperband}
        return out

    def metric_record(self) -> dict[str, Any]:
        """The metric as sweep.json and reports hold it: name, goal, and ``summary: best`` for a best-epoch metric."""
        return {"name": self.metric, "goal": self.goal, **({"summary": "best"} if self.best else {})}

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a grid sweep, in a fixed order."""
        keys = [p.name for p in self.searched]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(p.values for p in self.searched))]

    def space(self) -> dict[str, Any]:
        """The canonical search space, as JSON data: what a study's trials depend on (not the trial cap or the
        pruner)."""
        space = {
            "method": self.method,
            "metric": self.metric,
            "goal": self.goal,
            **({"summary": "best"} if self.best else {}),
            "parameters": {
                p.name: {k: v for k, v in dataclasses.asdict(p).items() if k != "name" and v not in (None, ())}
                for p in sorted(self.params, key=lambda p: p.name)
            },
        }
        return json.loads(json.dumps(space, default=str))

    def fingerprint(self) -> str:
        """A short hash of ``space()``: equal for sweep files that differ only in spelling, order or comments."""
        text = json.dumps(self.space(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _number(value: Any, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SweepError(f"parameters.{key}: {value!r} is not a number") from None


def _value(name: str, key: str, value: Any) -> Any:
    """A value as the trial will use it: canonical spelling, or the field's type (``64.0`` -> ``64``)."""
    if name == "num_layers" and isinstance(value, list | tuple):
        raise SweepError(f"parameters.{key}: {value!r} is a list; the widths of each layer are hidden_sizes")
    try:
        if name in CHOICES:
            return names.canonical(name, value)
        if FIELD_TYPES[name][0] in ("int", "float", "bool", "str") or _is_list_field(name):
            return coerce(name, value)  # [32, 16], "32,16", "[32, 16]" and "32 16" are one value, (32, 16)
    except (names.UnknownNameError, ConfigError) as err:
        raise SweepError(f"parameters.{key}: {err}") from None
    return tuple(value) if isinstance(value, list) else value


def _is_widths(value: Any) -> bool:
    """Whether a value is a list of widths (``[64, 64]``, ``"[64,64]"``, ``"32 32"``) rather than one width."""
    if isinstance(value, list | tuple):
        return True
    return isinstance(value, str) and any(c in value for c in "[], ") and value.strip() != ""


def _is_list_field(name: str) -> bool:
    return FIELD_TYPES[name][0].startswith("tuple")


def encode(value: Any) -> Any:
    """A value as a study stores it: a list such as ``(32, 16)`` as the text ``"32-16"`` (Optuna keeps only
    numbers, text, booleans and None as choices: a tuple comes back from the storage as a list, which no longer
    matches the choices of a rerun or of a second worker, and plots need hashable values)."""
    return "-".join(map(str, value)) if isinstance(value, tuple | list) else value


def decode(name: str, value: Any) -> Any:
    """The value of field ``name`` from its stored form (inverse of ``encode``): ``"32-16"`` -> ``(32, 16)``."""
    if isinstance(value, str) and name in FIELD_TYPES and _is_list_field(name):
        return coerce(name, value.replace("-", ","))
    return value


def _distinct(values: list[Any]) -> tuple[Any, ...]:
    """Values without repeats, in order (``[nag, nesterov]`` is one choice once both are ``nag``)."""
    out: list[Any] = []
    for value in values:
        if not any(value == seen and type(value) is type(seen) for seen in out):
            out.append(value)
    return tuple(out)


def _param(key: str, name: str, body: Any) -> Param:
    """The parameter ``key`` of the file (which means field ``name``) with its canonical values."""
    if not isinstance(body, dict):
        raise SweepError(f"parameters.{key} must be a mapping such as {{values: [...]}} or {{min: .., max: ..}}")
    if "value" in body:
        if name == "hidden_size" and _is_widths(body["value"]):
            name = "hidden_sizes"  # one list of widths
        elif isinstance(body["value"], list) and not _is_list_field(name):
            raise SweepError(
                f"parameters.{key}: value: {body['value']} is one value, a list; did you mean values: {body['value']}?"
            )
        return Param(name, "constant", (_value(name, key, body["value"]),))
    if "values" in body:
        values = body["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"parameters.{key}.values must be a non-empty list")
        if name == "hidden_size" and any(_is_widths(v) for v in values):
            if not all(_is_widths(v) for v in values):
                raise SweepError(f"parameters.{key} mixes widths and lists of widths: write every value as a list")
            name = "hidden_sizes"  # each value is the widths of every layer: [[64, 64], [128]]
        return Param(name, "categorical", _distinct([_value(name, key, v) for v in values]))
    if "min" in body and "max" in body:
        return _range(name, key, body)
    raise SweepError(f"parameters.{key} needs value, values, or min and max")


def _range(name: str, key: str, body: dict[str, Any]) -> Param:
    kind = FIELD_TYPES[name][0]
    if kind not in ("int", "float"):
        raise SweepError(f"parameters.{key}: min/max need a numeric option; list the choices as values: [...]")
    low, high = _number(body["min"], key), _number(body["max"], key)
    q = _number(body["q"], key) if "q" in body else None
    distribution = body.get("distribution", "int_uniform" if kind == "int" else "uniform")
    if distribution not in DISTRIBUTIONS[2:]:
        raise SweepError(f"parameters.{key}.distribution {distribution!r} is not one of {', '.join(DISTRIBUTIONS[2:])}")
    if not low < high:
        raise SweepError(f"parameters.{key}: min must be < max")
    if distribution == "log_uniform":  # W&B: min and max are natural-log exponents
        low, high, distribution = math.exp(low), math.exp(high), "log_uniform_values"
    if distribution == "log_uniform_values" and low <= 0:
        raise SweepError(f"parameters.{key}: log_uniform_values needs min > 0")
    if kind == "int":
        distribution, q = _integer_range(name, key, low, high, q, distribution)
    return Param(name, distribution, low=low, high=high, q=q)


def _integer_range(name: str, key: str, low: float, high: float, q: float | None, distribution: str) -> tuple:
    """(distribution, q) of an integer option's range: it must only ever draw integers, so integer ends and steps
    of whole numbers."""
    if not (low.is_integer() and high.is_integer() and (q is None or q.is_integer())):
        raise SweepError(f"parameters.{key}: {names.flag(name)} is an integer: min, max and q must be integers")
    if distribution == "log_uniform_values":
        raise SweepError(f"parameters.{key}: {names.flag(name)} is an integer: use values: [...] or int_uniform")
    if q is None or q == 1:
        return "int_uniform", None
    return distribution, q


def parse_sweep(raw: dict[str, Any], name: str = "sweep", base: TrainConfig | None = None) -> SweepSpec:
    """Check and normalise a sweep mapping (as loaded from YAML or JSON), then ``validate`` it against ``base``
    (default: ``TrainConfig()``), so a bad value stops here rather than in a trial."""
    if not isinstance(raw, dict):
        raise SweepError("a sweep file must be a mapping with method, metric and parameters")
    method = str(raw.get("method", "random")).lower()
    if method not in METHODS:
        raise SweepError(f"method {method!r} is not one of {', '.join(METHODS)}")
    metric = _metric(raw.get("metric", {"name": "val_accuracy"}))
    found = _Parameters(raw.get("parameters"))
    found.add_wandb(raw)
    params = found.params()
    if method == "grid" and any(p.distribution not in ("constant", "categorical") for p in params):
        raise SweepError("method grid needs every parameter as values or value (no min/max ranges)")
    run_cap = raw.get("run_cap")
    fixed = {p.name: p.values[0] for p in params if p.distribution == "constant"}
    hyperband = _hyperband(raw.get("early_terminate"))
    notes = (metric.note,) if metric.note else ()
    spec = SweepSpec(
        method,
        metric.name,
        metric.goal,
        params,
        hyperband,
        int(run_cap) if run_cap else None,
        name,
        fixed,
        metric.best,
        (*notes, *found.notes, *_notes(params, base or TrainConfig())),
        found.wandb,
    )
    validate(spec, base or TrainConfig())
    return spec


def _metric(raw: Any) -> names.Metric:
    """The sweep's ``metric`` entry (a mapping with name and goal, or a bare name), as ``names.metric`` reads it."""
    metric = raw.get("name", "val_accuracy") if isinstance(raw, dict) else raw
    try:
        return names.metric(metric, raw.get("goal") if isinstance(raw, dict) else None)
    except ValueError as err:
        raise SweepError(f"metric: {err}") from None


class _Parameters:
    """The ``parameters`` of a sweep file read into ``Param`` s: names through ``fmnist.names`` (architecture
    constants checked and dropped, an ambiguous name decided by the others), each option named once, and the W&B
    settings the file asks for; ``notes`` say what was assumed."""

    def __init__(self, parameters: Any):
        if not isinstance(parameters, dict) or not parameters:
            raise SweepError("parameters must map option names to {values|value|min/max}")
        self.notes: list[str] = []
        self.wandb: str | None = None
        self.found: dict[str, Param] = {}  # the file's key -> its parameter
        ambiguous = {}
        for key, body in parameters.items():
            if (constant := names.constant(key)) is not None:
                _check_constant(key, constant, body)
            elif (field := _field(key)) is None:
                ambiguous[key] = body
            else:
                self.found[key] = _param(key, field, body)
        given = {p.name: p.drawable() for p in self.found.values()}
        for key, body in ambiguous.items():
            try:
                field, note = names.decide(key, given)
            except names.AmbiguousNameError as err:
                raise SweepError(f"parameters.{key}: {err}") from None
            self.found[key] = _param(key, field, body)
            self.notes.append(note)

    def add_wandb(self, raw: dict[str, Any]) -> None:
        """W&B as the file asks for it: W&B parameters, a top-level ``project``/``entity`` (where W&B keeps the
        sweep), or the options of a ``command:`` block (``--wandb_project P``, ``--use_wandb``)."""
        for key, p in self.found.items():
            if p.name in WANDB_FIELDS and self.wandb is None and p.values and p.values[0] is not False:
                self.wandb = f"parameters.{key}"
        for top, field_name in (("project", "wandb_project"), ("entity", "wandb_entity")):
            if raw.get(top) is not None:
                self._fixed(top, field_name, raw[top])
        for option, field_name, value in _command_options(raw.get("command")):
            self._fixed(f"command: {option}", field_name, value)
        if any(p.name == "wandb" and p.values == (False,) for p in self.found.values()):
            self.wandb = None  # wandb: {value: false} beside a project: the file says no

    def _fixed(self, where: str, field_name: str, value: Any) -> None:
        """A value the file sets outside its parameters (``project:``, a command's option)."""
        if any(p.name == field_name for p in self.found.values()):
            same = [p for p in self.found.values() if p.name == field_name and p.values == (value,)]
            if not same:
                raise SweepError(f"{where} and parameters both set {names.flag(field_name)}, to different values")
            return
        self.found[where] = Param(field_name, "constant", (_value(field_name, where, value),))
        if field_name in WANDB_FIELDS and self.wandb is None and value is not False:
            self.wandb = where

    def params(self) -> tuple[Param, ...]:
        """The parameters, each option named once (two spellings of one option are refused)."""
        seen: dict[str, str] = {}
        for key, p in self.found.items():
            if p.name in seen:
                raise SweepError(f"parameters.{key} and parameters.{seen[p.name]} are both {names.flag(p.name)}")
            seen[p.name] = key
        return tuple(self.found.values())


def _field(key: str) -> str | None:
    """The field of a parameter name, or None for a name with two meanings (decided by the file's others)."""
    try:
        return names.parameter(key)
    except names.AmbiguousNameError:
        return None
    except names.UnknownNameError as err:
        raise SweepError(str(err)) from None


def _check_constant(key: str, constant: str, body: Any) -> None:
    values = [body.get("value")] if isinstance(body, dict) and "value" in body else None
    values = body.get("values") if isinstance(body, dict) and values is None else values
    if not isinstance(values, list) or not values:
        raise SweepError(f"parameters.{key} needs value or values")
    for value in values:
        try:
            names.check_constant(constant, value)
        except ValueError as err:
            raise SweepError(f"parameters.{key}: {err}") from None


def _command_options(command: Any) -> list[tuple[str, str, Any]]:
    """(option as written, field, value) of each option in a W&B ``command:`` block (``--use_wandb``,
    ``--wandb_project P``, ``--entity=E``); the interpreter, the program and ``${...}`` macros are skipped.

    Raises:
        SweepError: an option ``fmnist train`` does not have, or one without its value.
    """
    if not isinstance(command, list):
        return []
    tokens = [str(t) for t in command if not str(t).startswith("${")]
    out, i = [], 0
    while i < len(tokens):
        option, _, value = tokens[i].partition("=")
        i += 1
        if not option.startswith("-"):
            continue  # the interpreter, the program, or a value
        switch = names.switch(option)
        if switch is not None and not value:
            out.append((option, switch[0], switch[1]))
            continue
        try:
            field_name = names.parameter(option)
        except (names.UnknownNameError, names.AmbiguousNameError):
            raise SweepError(f"command: fmnist train has no option {option}") from None
        if not value:
            if i >= len(tokens):
                raise SweepError(f"command: {option} needs a value")
            value, i = tokens[i], i + 1
        out.append((option, field_name, value))
    return out


def _notes(params: tuple[Param, ...], base: TrainConfig) -> list[str]:
    """What a user should know before the trials start: parameters that change nothing (a sweep's ``momentum``
    without momentum or nag), ``beta`` where course code also means momentum, layer counts next to width lists.

    Raises:
        SweepError: batch norm asked for on an MLP (fmnist's MLP has none).
    """
    drawable = {p.name: p.drawable() for p in params}
    notes = []
    optimizers = set(drawable.get("optimizer", (base.optimizer,)))
    if (
        "beta" in drawable
        and "momentum" not in drawable
        and optimizers & {"momentum", "nag"}
        and "rmsprop" in optimizers
    ):
        notes.append(
            f"beta is RMSprop's decay (DA6401's -beta); momentum and nag trials use momentum {base.momentum:g} "
            "(name momentum in the file to sweep it)"
        )
    models = set(drawable.get("model", (base.model,)))
    if "cnn" not in models and True in drawable.get("batch_norm", ()) and "batch_norm" in drawable:
        raise SweepError("parameters.batch_norm = True: fmnist's MLP has no batch norm (it is a model: cnn option)")
    examples = _examples(drawable, base)
    for p in params:
        shaped = p.name in ("num_layers", "hidden_size")  # a fixed layer count beside lists of widths misleads too
        if (p.distribution != "constant" or shaped) and not any(takes_effect(p.name, e) for e in examples):
            notes.append(f"{p.name} changes nothing in this sweep: {_needs(p.name)}")
    return notes


def _examples(drawable: dict[str, tuple[Any, ...]], base: TrainConfig) -> list[SimpleNamespace]:
    """Every combination of the values that decide whether an option takes effect (``takes_effect`` reads them)."""
    deciders = ("optimizer", "lr_schedule", "model", "hidden_sizes", "weight_decay")
    choices = [drawable.get(name, (getattr(base, name),)) for name in deciders]
    return [SimpleNamespace(**dict(zip(deciders, combo, strict=True))) for combo in itertools.product(*choices)]


def takes_effect(name: str, config: Any) -> bool:
    """Whether option ``name`` changes anything in a run of ``config``: an optimizer's own hyperparameters only
    with that optimizer, the step schedule's with it, CNN options with a CNN, ``num_layers``/``hidden_size`` only
    without ``hidden_sizes``..."""
    rule = OPTIMIZER_FIELDS.get(name)
    if rule is not None and name not in ("learning_rate", "weight_decay"):
        return rule in OPTIMIZERS[config.optimizer].defaults
    if name in ("lr_gamma", "lr_step_epochs"):
        return config.lr_schedule == "step"
    if name == "warmup_epochs":
        return config.lr_schedule != "onecycle"
    if name in CNN_ONLY:
        return config.model == "cnn"
    if name in ("num_layers", "hidden_size"):
        return config.hidden_sizes is None
    if name == "decoupled_weight_decay":
        return config.weight_decay > 0
    return True


def _needs(name: str) -> str:
    """Why option ``name`` takes no effect in a sweep, for a note."""
    rule = OPTIMIZER_FIELDS.get(name)
    if rule is not None:
        users = [o for o, cls in OPTIMIZERS.items() if rule in cls.defaults]
        return f"only optimizer {' and '.join(users)} use{'s' if len(users) == 1 else ''} it"
    why = {"lr_gamma": "it is the step schedule's (lr_schedule: step)", "warmup_epochs": "onecycle has its own warm-up"}
    why.update(lr_step_epochs=why["lr_gamma"], decoupled_weight_decay="weight_decay is 0")
    why.update(dict.fromkeys(CNN_ONLY, "it is a CNN option (model: cnn)"))
    why.update(dict.fromkeys(("num_layers", "hidden_size"), "the lists of widths give every layer"))
    return why.get(name, "no trial uses it")


def _hyperband(early: Any) -> dict[str, int] | None:
    """Hyperband's settings from ``early_terminate``, or None without one."""
    if not early:
        return None
    if not isinstance(early, dict) or str(early.get("type", "")).lower() != "hyperband":
        raise SweepError("early_terminate supports {type: hyperband, min_iter: N, eta: N}")
    return {"min_iter": int(early.get("min_iter", 1)), "eta": int(early.get("eta", 3))}


def load_sweep(path: str | Path, base: TrainConfig | None = None) -> SweepSpec:
    """Read a sweep file (YAML or JSON), checked and validated against ``base`` (see ``parse_sweep``)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    try:
        raw = load_mapping(path)
    except ConfigError as err:
        raise SweepError(str(err)) from None
    return parse_sweep(raw, name=path.stem, base=base)


def validate(spec: SweepSpec, base: TrainConfig) -> None:
    """Check, before any trial, every configuration the sweep can produce against ``TrainConfig``'s rules: each
    value on its own, every combination of the values and range ends a sampler can draw (every pair of them when
    there are more than ``COMBINATIONS_CHECKED`` combinations), with the fixed values and ``base``.

    Raises:
        SweepError: one line naming the parameter(s) and value(s) and the rule they break.
    """
    check = _Checker(spec, base.to_dict())
    check(dict(spec.fixed))
    for p in spec.searched:
        for value in p.drawable():
            check({**spec.fixed, p.name: value})
    choices = [[(p.name, v) for v in p.drawable()] for p in spec.searched]
    if math.prod(len(c) for c in choices) <= COMBINATIONS_CHECKED:
        combinations: Any = itertools.product(*choices)
    else:
        combinations = (pair for a, b in itertools.combinations(choices, 2) for pair in itertools.product(a, b))
    for combination in combinations:
        check({**spec.fixed, **dict(combination)})


@dataclass
class _Checker:
    """Calling it checks one set of values over ``start`` and raises the ``SweepError`` that names the fewest
    values breaking a rule."""

    spec: SweepSpec
    start: dict[str, Any]

    def fails(self, values: dict[str, Any]) -> str | None:
        """Why these values make no valid run, or None."""
        try:
            config = TrainConfig(**{**self.start, **values})
        except ConfigError as err:
            return str(err)
        metric = self.spec.metric
        if metric.startswith("val_") and config.val_fraction == 0:  # the metric and any pruning watch it
            return f"--val-fraction 0 leaves no validation split for the sweep's metric {metric}"
        return None

    def __call__(self, values: dict[str, Any]) -> None:
        why = self.fails(values)
        if why is None:
            return
        values, why = self._fewest(values, why)
        shown = ", ".join(f"{name} = {_show(value)}" for name, value in values.items())
        raise SweepError(f"parameters: {shown}: {why}" if len(values) > 1 else f"parameters.{shown}: {why}")

    def _fewest(self, values: dict[str, Any], why: str) -> tuple[dict[str, Any], str]:
        for size in range(1, len(values)):
            for subset in itertools.combinations(values.items(), size):
                reason = self.fails(dict(subset))
                if reason is not None:
                    return dict(subset), reason
        return values, why


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _show(value: Any, digits: str = "", join: str = ",") -> str:
    """A value in a message (``0.0001``, ``256,128``) or, with ``digits=".3", join="x"``, in a directory name."""
    if isinstance(value, float):
        return f"{value:{digits}g}"
    if isinstance(value, tuple | list):
        return join.join(map(str, value))
    return str(value)


def config_from_mapping(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A ``TrainConfig`` from option names and values (e.g. a trial's parameters or a --config file)."""
    merged = base.to_dict() if base is not None else {}
    for key, value in values.items():
        merged[config_name(key)] = tuple(value) if isinstance(value, list) else value
    return TrainConfig(**merged)


def run_name(trial_number: int, params: dict[str, Any]) -> str:
    """A readable run directory name from the key hyperparameters, e.g. ``t007_hl-3_bs-16_act-tanh_opt-adam``."""
    parts = [f"{names.short(k)}-{_show(v, '.3', 'x')}" for k, v in params.items()]
    return f"t{trial_number:03d}" + ("_" + "_".join(parts) if parts else "")
