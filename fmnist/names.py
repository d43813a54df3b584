"""One table of spellings: the canonical names of optimizers, activations, initialisers, losses, datasets, devices,
schedules, options and metrics, and every other spelling people write for them.

The command line, ``--config`` files, sweep files and the Python API all go through this table, so
``fmnist train -o nesterov``, a sweep file's ``optimizer: {values: [nesterov]}`` and ``get_optimizer("Nesterov")``
mean the same thing. Matching ignores case, spaces, ``-`` and ``_`` (``Fashion-MNIST`` = ``fashion_mnist``).

Beyond the listed spellings, names are read by rules that generalise: a parameter name is the set of its words
after plural and spelling variants are made one (``layers`` = ``layer``, ``initialisation`` = ``init``), words that
count (``n_``, ``num_``, ``number_of_``, ``_count``) or name a kind (``_type``, ``_func``, ``_fn``, ``_function``)
are dropped, and ``hidden`` is understood (every sized layer is hidden). So ``number_of_hidden_layers``,
``hidden_layers_count`` and ``n_layer`` are all ``num_layers``, and ``neurons_per_hidden_layer`` is
``hidden_size``. A value may carry its kind's word (``cross_entropy_loss``, ``random_init``). Names with two
plausible meanings (``gamma``, ``decay``) are never read silently: see ``AMBIGUOUS``. Things fmnist does not have
(``adagrad``, ``LeakyReLU``) are named as such, without a misleading "did you mean".

This module imports nothing of fmnist, so every package may use it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# kind -> canonical value -> (how people see it in help and errors, other spellings)
VALUES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "optimizer": {
        "sgd": (
            "sgd",
            (
                *("gd", "vgd", "vanilla", "vanilla_sgd", "vanilla_gd", "plain", "normal", "stochastic"),
                *("gradient_descent", "stochastic_gradient_descent"),
            ),
        ),
        "momentum": (
            "momentum",
            ("sgdm", "sgd_momentum", "momentum_sgd", "mgd", "momentum_gd", "classical_momentum", "heavy_ball"),
        ),
        "nag": (
            "nag",
            ("nesterov", "nesterov_momentum", "nesterov_accelerated_gradient", "sgd_nesterov", "nesterov_gd"),
        ),
        "rmsprop": ("rmsprop", ("rms",)),
        "adam": ("adam", ()),
        "nadam": ("nadam", ("nesterov_adam",)),
    },
    "activation": {
        "identity": ("identity", ("linear", "none", "id")),
        "sigmoid": ("sigmoid", ("logistic", "sigm")),
        "tanh": ("tanh", ("hyperbolic_tangent",)),
        "relu": ("ReLU", ("rectifier", "rectified_linear", "rectified_linear_unit")),
    },
    "weight_init": {
        "random": ("random", ("normal", "random_normal", "gaussian", "randn")),
        # fmnist's Xavier is Glorot *uniform* and its He is Kaiming *normal*: only those spellings are aliases
        "xavier": ("Xavier", ("glorot", "xavier_uniform", "glorot_uniform")),
        "he": ("he", ("kaiming", "he_normal", "kaiming_normal", "msra")),
    },
    "loss": {
        "cross_entropy": (
            "cross_entropy",
            (
                *("ce", "cel", "categorical_crossentropy", "categorical_cross_entropy", "softmax_cross_entropy"),
                *("log_loss", "nll"),
            ),
        ),
        "mean_squared_error": ("mean_squared_error", ("mse", "mean_square_error", "squared_error", "squared_loss")),
    },
    "dataset": {
        "fashion-mnist": ("fashion_mnist", ("fmnist", "fashion")),
        "mnist": ("mnist", ()),
    },
    "device": {
        "cpu": ("cpu", ("numpy",)),
        "gpu": ("gpu", ("cuda", "cupy")),
        "auto": ("auto", ()),
    },
    "model": {
        "mlp": ("mlp", ("dense", "fully_connected", "fc", "feedforward")),
        "cnn": ("cnn", ("conv", "convnet", "convolutional", "conv_net")),
    },
    "lr_schedule": {
        "constant": ("constant", ("const", "fixed", "none")),
        "cosine": ("cosine", ("cos", "cosine_annealing", "cosine_decay")),
        "step": ("step", ("step_lr", "step_decay")),
        "onecycle": ("onecycle", ("one_cycle", "1cycle", "one_cycle_lr", "onecyclelr")),
    },
}

# A value may carry the word of its kind before or after it: cross_entropy_loss, random_init, adam_optimizer.
VALUE_WORDS: dict[str, tuple[str, ...]] = {
    "optimizer": ("optimizer", "optimiser", "optim", "opt"),
    "activation": ("activation", "function", "act", "fn"),
    "weight_init": ("initialization", "initialisation", "initializer", "initialiser", "init", "weights", "weight"),
    "loss": ("function", "loss", "fn"),
    "lr_schedule": ("scheduler", "schedule", "lr"),
    "dataset": ("dataset", "data"),
}

# Values people write for things fmnist does not have: what to tell them (never a "did you mean" to another thing).
NOT_AVAILABLE: dict[str, dict[str, str]] = {
    "optimizer": {
        **dict.fromkeys(("adagrad", "adadelta", "adamax", "amsgrad", "eve", "lion", "lbfgs", "ftrl"), ""),
        "adamw": "fmnist's AdamW is adam with --decoupled-weight-decay (decoupled_weight_decay: true in a sweep file)",
    },
    "activation": {
        **dict.fromkeys(("leaky_relu", "lrelu", "prelu", "elu", "selu", "gelu", "silu", "swish", "mish"), ""),
        **dict.fromkeys(("softplus", "softsign", "arctan", "atan", "hard_tanh", "hard_sigmoid", "relu6"), ""),
        "softmax": "the output layer is always softmax; hidden layers take identity, sigmoid, tanh or ReLU",
    },
    "weight_init": {
        **dict.fromkeys(("zero", "zeros"), "all-zero weights cannot learn (every unit of a layer stays the same)"),
        **dict.fromkeys(("xavier_normal", "glorot_normal"), "fmnist's Xavier is Glorot uniform"),
        **dict.fromkeys(("he_uniform", "kaiming_uniform"), "fmnist's he is Kaiming normal"),
        **dict.fromkeys(("orthogonal", "lecun", "lecun_normal", "lecun_uniform", "ones", "uniform"), ""),
    },
    "loss": {
        **dict.fromkeys(("mae", "mean_absolute_error", "l1"), "fmnist has no mean absolute error loss"),
        **dict.fromkeys(("hinge", "huber", "binary_cross_entropy", "bce", "kl_divergence", "focal"), ""),
    },
    "dataset": dict.fromkeys(("cifar10", "cifar100", "kmnist", "emnist", "svhn"), ""),
}

# TrainConfig field -> other names: the DA6401 short flags first, then names course sweep files use
PARAMETERS: dict[str, tuple[str, ...]] = {
    "dataset": ("d", "data", "dataset_name"),
    "epochs": ("e", "epoch", "num_epochs", "n_epochs", "max_epochs"),
    "batch_size": ("b", "batch", "bs", "mini_batch_size", "minibatch_size"),
    "loss": ("l", "loss_function", "loss_fn", "criterion"),
    "optimizer": ("o", "optim", "opt", "optimiser", "optimizer_name"),
    "learning_rate": ("lr", "eta", "lr_rate"),
    "momentum": ("m", "mom"),
    "beta": ("rho", "rmsprop_beta", "beta_rmsprop"),
    "beta1": ("b1", "adam_beta1"),
    "beta2": ("b2", "adam_beta2"),
    "epsilon": ("eps",),
    "weight_decay": (
        *("w_d", "wd", "l2", "l2_reg", "l2_regularization", "l2_regularisation", "l2_lambda", "l2_penalty"),
        *("reg", "regularization", "lambda", "weight_decay_lambda"),
    ),
    "weight_init": (
        "w_i",
        "wi",
        "init",
        "weight_initialization",
        "weight_initialisation",
        "initialization",
        "initialisation",
        "initializer",
        "initialiser",
        "weight_initializer",
        "init_method",
    ),
    "num_layers": (
        "nhl",
        "hidden_layers",
        "num_hidden_layers",
        "n_layers",
        "n_hidden_layers",
        "number_of_layers",
        "number_of_hidden_layers",
        "layers",
        "depth",
    ),
    "hidden_size": (
        "sz",
        "hidden_layer_size",
        "layer_size",
        "hidden_units",
        "num_hidden_units",
        "hidden_neurons",
        "units",
        "neurons",
        "num_neurons",
        "hidden_dim",
        "width",
    ),
    "hidden_sizes": ("hs", "layer_sizes", "hidden_layer_sizes", "hidden_dims", "widths"),
    "activation": ("a", "activation_function", "activation_fn", "act", "nonlinearity", "hidden_activation"),
    "model": ("architecture", "arch", "model_type", "network"),
    "conv_channels": ("channels", "filters", "num_filters", "conv_filters", "cc"),
    "convs_per_block": ("convs", "conv_per_block", "cpb"),
    "kernel_size": ("kernel", "filter_size", "ks"),
    "batch_norm": ("bn", "batchnorm", "use_batch_norm", "batch_normalization", "batch_normalisation"),
    "conv_dropout": ("feature_dropout", "spatial_dropout"),
    "device": (),
    "seed": ("random_seed", "random_state"),
    "val_fraction": ("validation_split", "val_split", "validation_fraction"),
    "patience": ("early_stopping_patience",),
    "lr_schedule": ("schedule", "scheduler", "lr_scheduler", "learning_rate_schedule"),
    "warmup_epochs": ("warmup", "lr_warmup_epochs"),
    "lr_step_epochs": ("lr_step", "lr_step_size"),
    "lr_gamma": ("lr_decay", "lr_decay_factor"),
    "dropout": ("dropout_rate", "do", "dropout_prob", "dropout_p"),
    "label_smoothing": ("smoothing",),
    "decoupled_weight_decay": ("decoupled_wd",),
    "max_grad_norm": ("clip_grad_norm", "grad_clip", "gradient_clipping", "clip_norm", "clip_grad", "max_norm"),
    "augment_shift": ("shift",),
    "augment_flip": ("flip", "hflip", "horizontal_flip"),
    "standardize": ("standardise",),
    "wandb": ("use_wandb",),
    "wandb_project": ("wp", "project"),
    "wandb_entity": ("we", "entity"),
    "data_dir": ("data_path",),
}

# The fields that are switches (true or false): "no_wandb" turns one off, it does not count anything.
SWITCHES = ("batch_norm", "decoupled_weight_decay", "augment_flip", "standardize", "wandb")

# Names with two plausible meanings: name -> {field: what it means when it is that field}. Never read silently:
# a sweep file decides by its other parameters (``decide``), anything else is refused with both meanings.
AMBIGUOUS: dict[str, dict[str, str]] = {
    "gamma": {
        "momentum": "the momentum coefficient of momentum and nag, as course code uses it",
        "lr_gamma": "the step schedule's decay factor",
    },
    "decay": {
        "weight_decay": "L2 weight decay, as course code uses it",
        "lr_gamma": "the step schedule's learning-rate decay factor",
    },
}

# What every fmnist network is, which course files sometimes write as parameters: name -> (the only value, why,
# other spellings). A file may state them; a different value is refused.
CONSTANTS: dict[str, tuple[object, str, tuple[str, ...]]] = {
    "input_size": (784, "fmnist's networks read the 784 pixels of a 28x28 image", ("input_dim", "num_inputs")),
    "output_size": (10, "both datasets have 10 classes", ("output_dim", "num_classes", "num_outputs", "classes")),
    "output_activation": (
        "softmax",
        "the output layer is softmax (the losses are computed on its outputs)",
        ("final_activation", "last_activation", "out_activation"),
    ),
}

# The DA6401 train.py options keep their underscored long flags (--learning_rate); fmnist's own use dashes.
DA6401_FLAGS: dict[str, str] = {
    "wandb_project": "-wp",
    "wandb_entity": "-we",
    "dataset": "-d",
    "epochs": "-e",
    "batch_size": "-b",
    "loss": "-l",
    "optimizer": "-o",
    "learning_rate": "-lr",
    "momentum": "-m",
    "beta": "-beta",
    "beta1": "-beta1",
    "beta2": "-beta2",
    "epsilon": "-eps",
    "weight_decay": "-w_d",
    "weight_init": "-w_i",
    "num_layers": "-nhl",
    "hidden_size": "-sz",
    "activation": "-a",
}
_OTHER_FLAGS = {"max_grad_norm": "--clip-grad-norm"}

# Short column headers and run-directory parts, e.g. t007_hl-3_bs-16_act-tanh_opt-adam (also read as names)
SHORT: dict[str, str] = {
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
    "beta": "beta",
    "beta1": "b1",
    "beta2": "b2",
    "epsilon": "eps",
    "label_smoothing": "ls",
    "max_grad_norm": "clip",
    "augment_shift": "shift",
    "augment_flip": "flip",
    "warmup_epochs": "warm",
    "lr_schedule": "sched",
    "lr_gamma": "gamma",
    "lr_step_epochs": "lrstep",
    "val_fraction": "val",
    "decoupled_weight_decay": "dwd",
    "standardize": "std",
    "patience": "pat",
    "dataset": "data",
    "model": "model",
    "conv_channels": "cc",
    "convs_per_block": "cpb",
    "kernel_size": "ks",
    "batch_norm": "bn",
    "conv_dropout": "cdo",
}

# --- the words of a parameter name ----------------------------------------------------------------------------------

# word -> its other spellings and abbreviations (British spellings, plurals that are not a plain "s", short forms)
WORD_SPELLINGS: dict[str, tuple[str, ...]] = {
    "init": ("initialization", "initialisation", "initializer", "initialiser", "initialize", "initialise"),
    "weight": ("w",),
    "optimizer": ("optimiser", "optim", "opt", "optimization", "optimisation"),
    "activation": ("act", "activ", "nonlinearity"),
    "size": ("sz", "s", "neuron", "unit", "node", "width", "dim", "dimension"),
    "layer": ("hl", "hlayer"),
    "epoch": ("ep",),
    "lr": ("learning",),
    "reg": ("regularization", "regularisation", "regularizer", "regulariser"),
    "lambda": ("lamda", "lambd", "lmbda"),
    "norm": ("normalization", "normalisation"),
    "standardize": ("standardise", "standardization", "standardisation"),
    "epsilon": ("eps",),
    "momentum": ("mom",),
    "batch": ("minibatch",),
    "validation": ("val", "valid"),
    "augment": ("augmentation", "aug"),
}
COUNT_WORDS = ("n", "num", "number", "no", "nb", "nr", "count", "total")
FILLER_WORDS = ("of", "in", "each", "per", "the", "for", "every", "all", "hidden", "use", "mini")
KIND_WORDS = (
    *("type", "technique", "method", "mode", "kind", "name", "para", "param", "parameter", "value", "rate"),
    *("choice", "option", "func", "function", "fn", "setting", "list", "strategy", "scheme"),
)
NEGATIONS = ("no", "not", "disable", "without", "dont")
_PREFERRED = {"hidden_sizes": "hidden_size"}  # one set of words for both: a list of widths is read as hidden_sizes
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


class UnknownNameError(ValueError):
    """A name that is in no table; the one-line message suggests the nearest spelling and lists the valid ones."""

    def __init__(
        self, what: str, value: object, valid: Iterable[str], suggestion: str | None = None, why: str | None = None
    ) -> None:
        self.what, self.value, self.valid, self.suggestion = what, value, tuple(valid), suggestion
        hint = f": {why}" if why else f" (did you mean {suggestion}?)" if suggestion else ""
        super().__init__(f"unknown {what} {str(value)!r}{hint}; valid: {', '.join(self.valid)}")


class AmbiguousNameError(ValueError):
    """A name with two plausible meanings (``AMBIGUOUS``); the message gives both and the names that say each."""

    def __init__(self, name: object, meanings: Mapping[str, str]) -> None:
        self.name, self.meanings = name, dict(meanings)
        either = " or ".join(f"{what} (write {field})" for field, what in meanings.items())
        super().__init__(f"{str(name)!r} has two meanings: {either}")


def key(text: object) -> str:
    """The matching key of a spelling: lower case without spaces, ``-`` or ``_``."""
    return "".join(ch for ch in str(text).strip().lower() if ch not in " -_")


def _index(table: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, str]]:
    """key -> (canonical, spelling as written), refusing a spelling that two canonical names claim."""
    index: dict[str, tuple[str, str]] = {}
    for canonical, spellings in table.items():
        for spelling in (*spellings, canonical):  # the first spelling of a key is the one suggestions show
            found = index.setdefault(key(spelling), (canonical, spelling))
            if found[0] != canonical:
                raise RuntimeError(f"spelling {spelling!r} means both {found[0]!r} and {canonical!r}")
    return index


def _tokens(text: object) -> list[str]:
    """The words of a name, lower case: ``numHiddenLayers`` -> num hidden layers; digits stay with the word before
    (``beta_1`` -> beta1, ``hidden_size_1`` -> hidden size1)."""
    out: list[str] = []
    for token in _WORD.findall(str(text)):
        if token.isdigit() and out:
            out[-1] += token
        else:
            out.append(token.lower())
    return out


_SPELLING_OF = {other: word for word, others in WORD_SPELLINGS.items() for other in others}
_DROPPED = {*COUNT_WORDS, *FILLER_WORDS, *KIND_WORDS}


def _table_words() -> set[str]:
    spellings = [s for field, others in PARAMETERS.items() for s in (field, *others)]
    spellings += [s for _, (_, _, others) in CONSTANTS.items() for s in others] + list(CONSTANTS)
    words = {t for s in spellings for t in _tokens(s)} | set(_SPELLING_OF) | set(WORD_SPELLINGS) | _DROPPED
    return words | {w[:-1] for w in words if w.endswith("s") and not w.endswith("ss") and len(w) > 3}


_KNOWN_WORDS = _table_words()


def words(name: object) -> tuple[str, ...]:
    """What a parameter name says, as a sorted tuple of words (see the module's docstring):
    ``words("number_of_hidden_layers") == ("layer",)``, ``words("neurons_per_hidden_layer") == ("layer", "size")``.
    """
    out = set()
    for token in _tokens(name):
        glued = next((w for w in KIND_WORDS if token.endswith(w) and token[: -len(w)] in _KNOWN_WORDS), None)
        if token not in _KNOWN_WORDS and glued and len(token) > len(glued) + 1:  # l2_regpara, activationfunc
            token = token[: -len(glued)]
        if token.endswith("s") and not token.endswith("ss") and len(token) > 3 and token[:-1] in _KNOWN_WORDS:
            token = token[:-1]
        token = _SPELLING_OF.get(token, token)
        if token not in _DROPPED:
            out.add(token)
    return tuple(sorted(out))


def _words_index(table: Mapping[str, Iterable[str]]) -> dict[tuple[str, ...], str]:
    """words -> canonical name, refusing words that two names claim (but for ``_PREFERRED`` pairs)."""
    index: dict[tuple[str, ...], str] = {}
    for canonical, spellings in table.items():
        for spelling in (canonical, *spellings):
            said = words(spelling)
            found = index.setdefault(said, canonical)
            if found != canonical and _PREFERRED.get(canonical) != found:
                if _PREFERRED.get(found) != canonical:
                    raise RuntimeError(f"{spelling!r} says {said} like a name of {found!r}, but means {canonical!r}")
                index[said] = canonical
    return index


_VALUE_INDEX = {kind: _index({c: (d, *a) for c, (d, a) in table.items()}) for kind, table in VALUES.items()}
_SHORT_NAMES = {field: (short,) for field, short in SHORT.items() if key(short) not in AMBIGUOUS}
_PARAMETER_INDEX = _index({field: (field, *others) for field, others in PARAMETERS.items()})
_PARAMETER_INDEX.update({k: v for k, v in _index(_SHORT_NAMES).items() if k not in _PARAMETER_INDEX})
_PARAMETER_WORDS = _words_index({f: (*PARAMETERS[f], *_SHORT_NAMES.get(f, ())) for f in PARAMETERS})
_CONSTANT_WORDS = _words_index({name: others for name, (_, _, others) in CONSTANTS.items()})
_AMBIGUOUS_WORDS = {words(name): name for name in AMBIGUOUS}
_KINDS = {key(kind): kind for kind in VALUES}


def kind_of(kind: str) -> str | None:
    """The table for ``kind`` (``"weight init"``, ``"weight_init"``...), or None where there is none."""
    return _KINDS.get(key(kind))


def _table(kind: str) -> str:
    found = kind_of(kind)
    if found is None:
        raise KeyError(f"no table of {kind!r} names; tables: {', '.join(VALUES)}")
    return found


def values(kind: str) -> tuple[str, ...]:
    """The canonical values of ``kind`` (e.g. ``("identity", "sigmoid", "tanh", "relu")``)."""
    return tuple(VALUES[_table(kind)])


def display(kind: str, value: str) -> str:
    """How a canonical value is shown (the DA6401 spelling: ``ReLU``, ``Xavier``, ``fashion_mnist``)."""
    entry = VALUES[_table(kind)].get(value)
    return entry[0] if entry else value


def shown(kind: str) -> tuple[str, ...]:
    """The valid values of ``kind`` as shown in help and errors."""
    return tuple(display(kind, value) for value in values(kind))


def aliases(kind: str) -> dict[str, tuple[str, ...]]:
    """Canonical value -> every other accepted spelling (for documentation and tests)."""
    return {value: (shown_as, *others) for value, (shown_as, others) in VALUES[_table(kind)].items()}


def _without_kind_word(kind: str, text: str, table: Mapping[str, T]) -> T | None:
    """``table``'s entry for ``text`` (a key), or for ``text`` without a word of its kind before or after it."""
    if text in table:
        return table[text]
    for word in VALUE_WORDS.get(kind, ()):
        for rest in (text.removesuffix(word), text.removeprefix(word)):
            if rest != text and rest in table:
                return table[rest]
    return None


def resolve(kind: str, value: object) -> str | None:
    """The canonical value of ``kind`` for any accepted spelling of it, or None."""
    table = _table(kind)
    found = _without_kind_word(table, key(value), _VALUE_INDEX[table]) if value is not None else None
    return found[0] if found else None


def canonical(kind: str, value: object) -> str:
    """The canonical value of ``kind`` (``optimizer``, ``activation``, ``weight_init``, ``loss``, ``dataset``,
    ``device``, ``lr_schedule``) for any accepted spelling, e.g. ``canonical("optimizer", "Nesterov") == "nag"``.

    Raises:
        UnknownNameError: no such value; the message lists the valid ones and says what fmnist has instead of a
            thing it does not have (``adagrad``), or suggests the nearest spelling.
    """
    table = _table(kind)
    found = resolve(table, value)
    if found is not None:
        return found
    what = table.replace("_", " ")
    missing = {key(k): v for k, v in NOT_AVAILABLE.get(table, {}).items()}
    why = _without_kind_word(table, key(value), missing)
    if why is not None:
        raise UnknownNameError(what, value, shown(table), why=why or f"fmnist has no {value} {what}")
    other = next((k for k in VALUES if k != table and resolve(k, value) is not None), None)
    if other is not None:
        raise UnknownNameError(what, value, shown(table), why=f"{value} is {_a(other)}, not {_a(what)}")
    raise UnknownNameError(what, value, shown(table), suggest(value, _VALUE_INDEX[table]))


def _a(what: str) -> str:
    what = what.replace("_", " ")
    return f"{'an' if what[0] in 'aeiou' else 'a'} {what}"


def parameter(name: object) -> str:
    """The ``TrainConfig`` field for an option or sweep parameter name (``-lr``, ``--hidden-sizes``,
    ``hidden_layers``, ``number_of_epochs``, ``activation_func``...): a listed spelling, or the same words.

    Raises:
        AmbiguousNameError: a name with two meanings (``gamma``, ``decay``).
        UnknownNameError: no such parameter; the message lists the valid ones and suggests the nearest.
    """
    text = str(name).lstrip("-")
    found = _PARAMETER_INDEX.get(key(text))
    if found is not None:
        return found[0]
    said = words(text)
    if said in _AMBIGUOUS_WORDS:
        raise AmbiguousNameError(name, AMBIGUOUS[_AMBIGUOUS_WORDS[said]])
    field = _PARAMETER_WORDS.get(said)
    negated = bool(_tokens(text)) and _tokens(text)[0] in NEGATIONS and field in SWITCHES
    if field is not None and not negated:
        return field
    if negated:
        raise UnknownNameError("parameter", name, PARAMETERS, why=f"write {field}: false")
    constant = _CONSTANT_WORDS.get(said)
    if constant is not None:
        value, why, _ = CONSTANTS[constant]
        raise UnknownNameError("parameter", name, PARAMETERS, why=f"{why} ({constant} is always {value})")
    raise UnknownNameError("parameter", name, PARAMETERS, suggest(text, _PARAMETER_INDEX))


def switch(name: object) -> tuple[str, bool] | None:
    """``(field, on)`` when ``name`` turns a switch on (``use_wandb``) or off (``no_wandb``, ``no-batch-norm``),
    else None."""
    tokens = _tokens(str(name).lstrip("-"))
    on = not (tokens and tokens[0] in NEGATIONS)
    field = _field(" ".join(tokens if on else tokens[1:]))
    return (field, on) if field in SWITCHES else None


def _field(text: str) -> str | None:
    found = _PARAMETER_INDEX.get(key(text))
    return found[0] if found else _PARAMETER_WORDS.get(words(text))


def constant(name: object) -> str | None:
    """The ``CONSTANTS`` entry a name means (``input_size``, ``input_dim``, ``num_classes``...), or None."""
    text = str(name).lstrip("-")
    if key(text) in {key(c) for c in CONSTANTS}:
        return next(c for c in CONSTANTS if key(c) == key(text))
    return _CONSTANT_WORDS.get(words(text))


def check_constant(name: str, value: object) -> None:
    """Accept a constant's one value (``input_size: 784``, ``output_activation: Softmax``).

    Raises:
        ValueError: another value, with what fmnist's networks are.
    """
    expected, why, _ = CONSTANTS[name]
    same = key(value) == key(expected) if isinstance(expected, str) else _number(value) == expected
    if not same:
        raise ValueError(f"{why}, so {name} can only be {expected}, got {value!r}")


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def decide(name: object, given: Mapping[str, Iterable[object]]) -> tuple[str, str]:
    """The field an ``AMBIGUOUS`` name means in a sweep file whose other parameters are ``given`` (field -> the
    canonical values it takes), and the note that says so; as ``gamma`` and ``decay`` are plain there:

    - with a step schedule among the file's ``lr_schedule`` values, either is ``lr_gamma``;
    - without one, ``gamma`` in a file that sweeps ``momentum`` or ``nag`` and names no momentum is ``momentum``,
      and ``decay`` in a file that names no weight decay is ``weight_decay``.

    Raises:
        AmbiguousNameError: the file does not make it plain.
    """
    meanings = AMBIGUOUS[_AMBIGUOUS_WORDS[words(name)]]
    step = "step" in set(given.get("lr_schedule", ())) or "lr_step_epochs" in given
    optimizers = set(given.get("optimizer", ()))
    if step and "lr_gamma" in meanings and "lr_gamma" not in given:
        field = "lr_gamma"
    elif not step and "momentum" in meanings and "momentum" not in given and optimizers & {"momentum", "nag"}:
        field = "momentum"
    elif not step and "weight_decay" in meanings and "weight_decay" not in given:
        field = "weight_decay"
    else:
        raise AmbiguousNameError(name, meanings)
    return field, f"{name} is read as {field}: {meanings[field]} (write {field} to say so)"


# --- metrics ---------------------------------------------------------------------------------------------------------

METRICS = {"val_accuracy": "maximize", "val_loss": "minimize", "train_accuracy": "maximize", "train_loss": "minimize"}
METRIC_WORDS: dict[str, tuple[str, ...]] = {
    "val": ("val", "valid", "validation", "eval", "evaluation", "dev", "holdout"),
    "train": ("train", "training", "tr"),
    "test": ("test", "testing"),
    "accuracy": ("acc", "accuracy", "accu"),
    "loss": ("loss", "cost"),
    "best": ("best", "max", "maximum", "top", "highest", "peak", "min", "minimum", "lowest"),
    "": ("final", "last", "end", "avg", "average", "mean", "epoch", "overall", "score", "metric", "set", "split"),
}
GOALS = {"maximize": ("maximize", "maximise", "max", "maximum"), "minimize": ("minimize", "minimise", "min", "minimum")}
_METRIC_WORD = {spelling: word for word, spellings in METRIC_WORDS.items() for spelling in spellings}


@dataclass(frozen=True)
class Metric:
    """A sweep's metric as read: ``name`` (one of ``METRICS``), ``goal``, ``best`` (a trial's value is the best
    epoch's rather than the last epoch's) and ``note`` (what was assumed, for the user), or None."""

    name: str
    goal: str
    best: bool = False
    note: str | None = None


def metric(name: object, goal: object = None) -> Metric:
    """Read a sweep's ``metric.name`` and ``metric.goal`` as people write them: ``Validation_Accuracy``,
    ``val_acc``, ``val.acc``, ``Val/Accuracy``, ``best_val_accuracy`` (the best epoch's), ``accuracy`` (read as
    validation accuracy, with a note: a sweep chooses on the validation split).

    Raises:
        ValueError: not a metric fmnist records (F1, test accuracy...), or a goal that contradicts it (minimize
            an accuracy); one line that says what to write instead.
    """
    said = [_METRIC_WORD.get(t, t) for t in _tokens(name)]
    said = [w for w in said if w]
    split = next((w for w in said if w in ("val", "train", "test")), None)
    quantity = next((w for w in said if w in ("accuracy", "loss")), None)
    other = [w for w in said if w not in ("val", "train", "test", "accuracy", "loss", "best")]
    wanted = "val_loss" if quantity == "loss" else "val_accuracy"
    if split == "test":
        raise ValueError(f"{name!r}: a sweep chooses on the validation split, never the test split; use {wanted}")
    if quantity is None or other:
        what = f"; fmnist records {', '.join(METRICS)}"
        raise ValueError(f"{name!r} is not a metric fmnist records{f' (did you mean {wanted}?)' if other else what}")
    canonical_name = f"{split or 'val'}_{quantity}"
    natural = METRICS[canonical_name]
    extreme = [t for t in _tokens(name) if _METRIC_WORD.get(t) == "best" and t not in ("best", "top", "peak")]
    if any(key(t).startswith("min") for t in extreme) == (natural == "maximize") and extreme:
        raise ValueError(f"{name!r}: the {extreme[0]} of {canonical_name} is the worst epoch's; use {canonical_name}")
    chosen = _goal(goal, natural)
    if chosen != natural:
        worst = "least accurate" if quantity == "accuracy" else "highest-loss"
        raise ValueError(
            f"goal {goal} of {canonical_name} would look for the {worst} model; write goal: {natural} (or leave it out)"
        )
    note = None if split else f"metric {name!r} is read as {canonical_name} (a sweep chooses on the validation split)"
    return Metric(canonical_name, chosen, "best" in said, note)


def _goal(goal: object, natural: str) -> str:
    if goal is None:
        return natural
    for canonical_goal, spellings in GOALS.items():
        if key(goal) in spellings:
            return canonical_goal
    raise ValueError(f"goal {goal!r} is not maximize or minimize")


# --- suggestions, flags, short names -------------------------------------------------------------------------------


def choose(what: str, value: object, valid: Iterable[str]) -> str:
    """``value`` matched (ignoring case and separators) to one of ``valid``, for small sets with no table
    (presets, a table another module owns).

    Raises:
        UnknownNameError: no match; the message lists ``valid`` and suggests the nearest.
    """
    index = {key(v): (v, v) for v in valid}
    found = index.get(key(value))
    if found is None:
        raise UnknownNameError(what, value, (v for v, _ in index.values()), suggest(value, index))
    return found[0]


def suggest(value: object, index: Mapping[str, tuple[str, str]]) -> str | None:
    """The accepted spelling nearest to ``value``, or None when nothing is near enough to be a slip of the
    keyboard: the one name one edit away (a letter added, dropped, changed or two swapped), or failing that a
    close match (difflib, 0.8), so that ``weight_para`` suggests nothing rather than ``weight_decay``."""
    text = key(value)
    if len(text) >= 3:
        near = {index[k][0]: index[k][1] for k in index if _one_edit(text, k)}
        if near:
            return next(iter(near.values())) if len(near) == 1 else None
    close = difflib.get_close_matches(text, list(index), n=1, cutoff=0.8)
    return index[close[0]][1] if close else None


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by exactly one letter added, dropped or changed, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]])
    short_one, long_one = sorted((a, b), key=len)
    return any(long_one[:i] + long_one[i + 1 :] == short_one for i in range(len(long_one)))


def flag(field: str) -> str:
    """The ``fmnist train`` long flag of a ``TrainConfig`` field (``--learning_rate``, ``--val-fraction``)."""
    if field in DA6401_FLAGS:
        return f"--{field}"
    return _OTHER_FLAGS.get(field, f"--{field.replace('_', '-')}")


def short(field: str) -> str:
    """A short name of a field for narrow tables and directory names (``hl``, ``bs``, ``opt``...)."""
    return SHORT.get(field, field)


def lookup(kind: str, name: str, table: Mapping[str, T], spellings: Mapping[str, str] | None = None) -> T:
    """``table[name]`` for any spelling of ``name`` that this table accepts (``ReLU``, ``relu``, ``nesterov`` for
    ``nag``...): how the network library finds an activation, initialiser, loss or optimizer by name.
    ``spellings`` maps table keys to how they are shown in the error.

    Raises:
        UnknownNameError (a ValueError): ``name`` is unknown; the one-line message suggests the nearest name and
        lists every valid one.
    """
    table_kind = kind_of(kind)
    candidates = [str(name), str(name).lower()]
    if table_kind is not None:
        candidates.append(resolve(table_kind, name) or "")
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    if table_kind is not None and set(table) == set(values(table_kind)):
        canonical(table_kind, name)  # raises: nearest of every accepted spelling, the valid ones listed
    spellings = spellings or {}
    valid = [spellings.get(k) or (display(table_kind, k) if table_kind else k) for k in table]
    index = {key(s): (s, s) for s in valid}
    raise UnknownNameError(kind, name, valid, suggest(name, index))
