import dataclasses
from pathlib import Path

import pytest

from fmnist import names
from fmnist.network import MLP, get_activation, get_initializer, get_loss, get_optimizer
from fmnist.training.config import CHOICES, ConfigError, TrainConfig


@pytest.mark.parametrize(
    ("getter", "spellings", "canonical"),
    [
        (get_activation, ["ReLU", "relu", "RELU", "rectifier"], "relu"),
        (get_activation, ["identity", "linear", "Linear"], "identity"),
        (get_activation, ["sigmoid", "Sigmoid", "logistic"], "sigmoid"),
        (get_activation, ["tanh", "Tanh"], "tanh"),
        (get_initializer, ["Xavier", "xavier", "glorot", "Glorot_Uniform", "xavier-uniform"], "xavier"),
        (get_initializer, ["he", "He", "kaiming", "he_normal", "Kaiming-Normal"], "he"),
        (get_initializer, ["random", "Random", "normal"], "random"),
        (get_loss, ["cross_entropy", "crossentropy", "Cross-Entropy", "categorical_crossentropy"], "cross_entropy"),
        (get_loss, ["mean_squared_error", "mse", "MSE", "mean-squared-error"], "mean_squared_error"),
    ],
)
def test_every_spelling_reaches_the_same_object(getter, spellings, canonical):
    reference = getter(canonical)
    for spelling in spellings:
        found = getter(spelling)  # the same function, or an instance of the same class
        assert found == reference or type(found) is type(reference), spelling


@pytest.mark.parametrize(
    ("getter", "bad", "listing", "suggestion"),
    [
        (get_activation, "softplus", "identity, sigmoid, tanh, ReLU", None),
        (get_activation, "reluu", "identity, sigmoid, tanh, ReLU", "ReLU"),
        (get_activation, "relu6", "identity, sigmoid, tanh, ReLU", None),  # another function: no "did you mean"
        (get_initializer, "xavir", "random, Xavier, he", "Xavier"),
        (get_loss, "cross_entrpy", "cross_entropy, mean_squared_error", "cross_entropy"),
    ],
)
def test_unknown_names_list_the_valid_ones_and_suggest_the_nearest(getter, bad, listing, suggestion):
    with pytest.raises(names.UnknownNameError) as caught:
        getter(bad)
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith(f"valid: {listing}")
    assert f"'{bad}'" in message
    if suggestion:
        assert f"did you mean {suggestion}?" in message
    else:
        assert "did you mean" not in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("kind", "spelling", "canonical"),
    [
        ("optimizer", "nesterov", "nag"),
        ("optimizer", "Nesterov", "nag"),
        ("optimizer", "nesterov_momentum", "nag"),
        ("optimizer", "NAG", "nag"),
        ("optimizer", "SGD", "sgd"),
        ("optimizer", "Adam", "adam"),
        ("optimizer", "RMSProp", "rmsprop"),
        ("optimizer", "rms_prop", "rmsprop"),
        ("optimizer", "NAdam", "nadam"),
        ("activation", "ReLU", "relu"),
        ("activation", "identity", "identity"),
        ("weight_init", "Xavier", "xavier"),
        ("weight init", "glorot", "xavier"),
        ("weight_init", "kaiming", "he"),
        ("loss", "crossentropy", "cross_entropy"),
        ("loss", "mse", "mean_squared_error"),
        ("dataset", "fashion_mnist", "fashion-mnist"),
        ("dataset", "Fashion-MNIST", "fashion-mnist"),
        ("dataset", "mnist", "mnist"),
        ("device", "cuda", "gpu"),
        ("lr_schedule", "cos", "cosine"),
    ],
)
def test_canonical_values(kind, spelling, canonical):
    assert names.canonical(kind, spelling) == canonical


@pytest.mark.parametrize(
    ("spelling", "field"),
    [
        # TrainConfig's own names, and the option spellings
        ("learning_rate", "learning_rate"),
        ("--learning_rate", "learning_rate"),
        ("hidden-sizes", "hidden_sizes"),
        ("--val-fraction", "val_fraction"),
        ("clip-grad-norm", "max_grad_norm"),
        # the DA6401 short flags
        ("-lr", "learning_rate"),
        ("-nhl", "num_layers"),
        ("-sz", "hidden_size"),
        ("-w_d", "weight_decay"),
        ("-w_i", "weight_init"),
        ("-o", "optimizer"),
        ("-a", "activation"),
        ("-b", "batch_size"),
        ("-e", "epochs"),
        ("-l", "loss"),
        ("-m", "momentum"),
        ("-eps", "epsilon"),
        ("-d", "dataset"),
        ("-wp", "wandb_project"),
        ("-we", "wandb_entity"),
        ("beta_1", "beta1"),
        # what course sweep files write
        ("hidden_layers", "num_layers"),
        ("num_hidden_layers", "num_layers"),
        ("n_layers", "num_layers"),
        ("hidden_layer_size", "hidden_size"),
        ("layer_size", "hidden_size"),
        ("lr", "learning_rate"),
        ("init", "weight_init"),
        ("weight_initialization", "weight_init"),
        ("activation_function", "activation"),
        ("batch", "batch_size"),
        ("num_epochs", "epochs"),
        ("wd", "weight_decay"),
        ("hidden_layer_sizes", "hidden_sizes"),
    ],
)
def test_parameter_names(spelling, field):
    assert names.parameter(spelling) == field


def test_unknown_parameter_suggests_and_lists():
    with pytest.raises(
        names.UnknownNameError,
        match=r"unknown parameter 'learning_rat' \(did you mean learning_rate\?\); valid: dataset, epochs",
    ):
        names.parameter("learning_rat")
    with pytest.raises(names.UnknownNameError, match="did you mean hidden_layers"):
        names.parameter("hiden_layers")
    with pytest.raises(names.UnknownNameError) as caught:
        names.parameter("colour")
    assert "did you mean" not in str(caught.value)


def test_the_table_knows_every_config_field_and_every_choice():
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    assert set(names.PARAMETERS) == fields, "add new TrainConfig fields to fmnist.names.PARAMETERS"
    assert set(names.DA6401_FLAGS) <= fields
    assert set(names.SHORT) <= fields
    for kind, values in CHOICES.items():
        assert values == names.values(kind)
        for value in values:  # each canonical value and each shown spelling maps to itself
            assert names.canonical(kind, value) == value
            assert names.canonical(kind, names.display(kind, value)) == value


def test_no_spelling_means_two_things():
    with pytest.raises(RuntimeError, match="means both"):
        names._index({"a": ("x",), "b": ("X",)})


def test_names_imports_nothing_of_fmnist():
    with open(names.__file__) as handle:
        source = handle.read()
    assert "from fmnist" not in source
    assert "import fmnist" not in source


def test_train_config_normalises_through_the_table():
    config = TrainConfig(
        optimizer="Nesterov", activation="ReLU", weight_init="glorot", dataset="fashion_mnist", loss="MSE"
    )
    assert (config.optimizer, config.activation, config.weight_init, config.dataset, config.loss) == (
        "nag",
        "relu",
        "xavier",
        "fashion-mnist",
        "mean_squared_error",
    )
    assert TrainConfig(optimizer="nesterov") == TrainConfig(optimizer="nag")
    with pytest.raises(
        ConfigError,
        match=r"^--optimizer: unknown optimizer 'nadm' \(did you mean nadam\?\); "
        r"valid: sgd, momentum, nag, rmsprop, adam, nadam$",
    ):
        TrainConfig(optimizer="nadm")
    with pytest.raises(ConfigError, match=r"^--optimizer: unknown optimizer 'adamw': fmnist's AdamW is adam with"):
        TrainConfig(optimizer="adamw")


def test_train_config_types_follow_the_fields():
    config = TrainConfig(epochs=5.0, batch_size="32", learning_rate="1e-3", augment_flip="yes", hidden_sizes="64,32")
    assert (config.epochs, config.batch_size, config.learning_rate, config.augment_flip) == (5, 32, 0.001, True)
    assert config.hidden_sizes == (64, 32)
    assert isinstance(TrainConfig(weight_decay=0).weight_decay, float)
    for values, message in [
        ({"batch_size": 37.5}, "--batch_size must be an integer, got 37.5"),
        ({"epochs": "ten"}, "--epochs must be an integer, got 'ten'"),
        ({"num_layers": True}, "--num_layers must be an integer, got True"),
        ({"dropout": "lots"}, "--dropout must be a number, got 'lots'"),
        ({"standardize": "maybe"}, "--standardize must be true or false, got 'maybe'"),
    ]:
        with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.") + "$"):
            TrainConfig(**values)


def test_config_from_dict_accepts_aliases_and_refuses_repeats():
    assert TrainConfig.from_dict({"lr": 0.01, "hidden_layers": 3, "-w_i": "Xavier"}) == TrainConfig(
        learning_rate=0.01, num_layers=3, weight_init="xavier"
    )
    with pytest.raises(ConfigError, match="given twice"):
        TrainConfig.from_dict({"lr": 0.01, "learning_rate": 0.02})
    with pytest.raises(ConfigError, match="unknown parameter 'learning_rat'"):
        TrainConfig.from_dict({"learning_rat": 0.01})


def test_optimizer_names():
    params = MLP([3, 2], seed=0).parameters()
    for name in ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "Adam", "nesterov", "NAG", "Nesterov_Momentum"]:
        assert get_optimizer(name, params).t == 0
    assert type(get_optimizer("nesterov", params)) is type(get_optimizer("nag", params))


def test_mlp_rejects_bad_sizes():
    with pytest.raises(ValueError, match="at least two positive widths"):
        MLP([784])
    with pytest.raises(ValueError, match="at least two positive widths"):
        MLP([784, 0, 10])


def test_mlp_shapes_and_parameter_views():
    model = MLP([784, 128, 64, 10], seed=0)
    params = model.parameters()
    assert [p.shape for p in params] == [(784, 128), (128,), (128, 64), (64,), (64, 10), (10,)]
    assert model.flat.size == sum(p.data.size for p in params)
    params[0].data[0, 0] = 123.0  # views: writes reach the flat buffer
    assert model.flat.data[0] == 123.0
    assert all(float(abs(p.grad).sum()) == 0.0 for p in params)  # .grad exists (zeros) from construction


# --- rules that generalise: what course files write, and what they will write -------------------------------------


@pytest.mark.parametrize(
    ("spelling", "field"),
    [
        # from the course files (tests/data/course), each with the meaning read in its repository's code
        ("n_epoch", "epochs"),
        ("number_of_epochs", "epochs"),
        ("size_hidden_layer", "hidden_size"),
        ("size_hidden", "hidden_size"),
        ("s_hidden_layers", "hidden_size"),  # the size of each layer (the count is n_hidden_layers beside it)
        ("neurons_in_each_hidden_layers", "hidden_size"),
        ("neurons_per_hidden_layer", "hidden_size"),
        ("num_neurons_in_hidden_layers", "hidden_size"),
        ("hidden_layers_count", "num_layers"),
        ("no_hidden_layer", "num_layers"),
        ("No_hidden_layer", "num_layers"),
        ("no_of_hidden_layers", "num_layers"),
        ("number_hidden_layers", "num_layers"),
        ("num_hlayers", "num_layers"),
        ("activation_func", "activation"),
        ("activation_para", "activation"),
        ("activation_type", "activation"),
        ("hidden_activation", "activation"),
        ("loss_type", "loss"),
        ("init_type", "weight_init"),
        ("initialization_technique", "weight_init"),
        ("initialization_type", "weight_init"),
        ("mode_of_initialization", "weight_init"),
        ("w_init", "weight_init"),
        ("optimizer_technique", "optimizer"),
        ("reg", "weight_decay"),
        ("lamda", "weight_decay"),
        ("l2_regpara", "weight_decay"),
        ("L2_regularisation", "weight_decay"),
        # the same rules on names no course file in the collection wrote
        ("NumberOfEpochs", "epochs"),
        ("epochs_count", "epochs"),
        ("learning_rates", "learning_rate"),
        ("learningRate", "learning_rate"),
        ("hidden_layer", "num_layers"),
        ("numHiddenLayers", "num_layers"),
        ("num_units", "hidden_size"),
        ("units_per_layer", "hidden_size"),
        ("nodes_per_layer", "hidden_size"),
        ("hidden_layer_widths", "hidden_size"),  # a list of widths under it is read as hidden_sizes
        ("loss_func", "loss"),
        ("loss_function_type", "loss"),
        ("optimiser_name", "optimizer"),
        ("initialisation_method", "weight_init"),
        ("weight_init_type", "weight_init"),
        ("batch_norm_type", "batch_norm"),
        ("dropout_rate", "dropout"),
        ("weight_decay_rate", "weight_decay"),
        ("regularisation", "weight_decay"),
        ("lambda", "weight_decay"),
        ("use_wandb", "wandb"),
        ("wi", "weight_init"),  # fmnist's own short names (leaderboard columns) are read back too
        ("ep", "epochs"),
        ("hl", "num_layers"),
    ],
)
def test_names_are_read_by_their_words(spelling, field):
    assert names.parameter(spelling) == field


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        # suggestions that would mislead are not made
        ("weight_para", r"^unknown parameter 'weight_para'; valid:"),
        ("is_hidden_layer_size_variable", r"^unknown parameter 'is_hidden_layer_size_variable'; valid:"),
        ("augmix_prob", r"^unknown parameter 'augmix_prob'; valid:"),
        ("hidden_size_1", r"^unknown parameter 'hidden_size_1'; valid:"),  # one layer's width, of several
        # a negation is not a count: no_wandb does not turn W&B on
        ("no_wandb", r"^unknown parameter 'no_wandb': write wandb: false;"),
        # what every fmnist network is
        ("input_size", r"^unknown parameter 'input_size': fmnist's networks read the 784 pixels .* always 784\)"),
        ("output_size", r"both datasets have 10 classes \(output_size is always 10\)"),
    ],
)
def test_names_fmnist_cannot_read(spelling, message):
    with pytest.raises(names.UnknownNameError, match=message):
        names.parameter(spelling)


@pytest.mark.parametrize("spelling", ["gamma", "Gamma", "decay", "decay_rate"])
def test_names_with_two_meanings_are_never_read_silently(spelling):
    with pytest.raises(names.AmbiguousNameError) as caught:
        names.parameter(spelling)
    message = str(caught.value)
    assert message.startswith(f"{spelling!r} has two meanings: ")
    assert "(write lr_gamma)" in message
    assert "(write momentum)" in message or "(write weight_decay)" in message
    with pytest.raises(ConfigError, match="has two meanings"):  # a --config file, the Python API: refused too
        TrainConfig.from_dict({spelling: 0.5})


@pytest.mark.parametrize(
    ("name", "given", "field"),
    [
        ("gamma", {"optimizer": ("sgd", "momentum")}, "momentum"),
        ("gamma", {"optimizer": ("nag",), "lr_schedule": ("step",)}, "lr_gamma"),
        ("gamma", {"optimizer": ("nag",), "lr_step_epochs": (5,)}, "lr_gamma"),
        ("gamma", {"optimizer": ("adam",)}, None),
        ("gamma", {"optimizer": ("momentum",), "momentum": (0.9,)}, None),
        ("gamma", {}, None),
        ("decay", {}, "weight_decay"),
        ("decay", {"lr_schedule": ("cosine", "step")}, "lr_gamma"),
        ("decay", {"weight_decay": (0.0,)}, None),
    ],
)
def test_a_sweep_file_decides_a_name_with_two_meanings(name, given, field):
    if field is None:
        with pytest.raises(names.AmbiguousNameError):
            names.decide(name, given)
        return
    decided, note = names.decide(name, given)
    assert decided == field
    assert note.startswith(f"{name} is read as {field}: ")


def test_switches_on_and_off():
    assert names.switch("--use_wandb") == ("wandb", True)
    assert names.switch("--no_wandb") == ("wandb", False)
    assert names.switch("--no-batch-norm") == ("batch_norm", False)
    assert names.switch("--epochs") is None
    assert set(names.SWITCHES) == {f.name for f in dataclasses.fields(TrainConfig) if f.type == "bool"}


@pytest.mark.parametrize(
    ("kind", "spelling", "canonical"),
    [
        ("optimizer", "sgdm", "momentum"),
        ("optimizer", "vgd", "sgd"),
        ("optimizer", "stochastic", "sgd"),
        ("optimizer", "Normal", "sgd"),
        ("optimizer", "adam_optimizer", "adam"),
        ("activation", "ReLu", "relu"),
        ("activation", "relu_activation", "relu"),
        ("weight_init", "random_init", "random"),
        ("weight_init", "xavier_init", "xavier"),
        ("weight_init", "kaiming_init", "he"),
        ("weight_init", "RandomNormal", "random"),
        ("weight_init", "XavierUniform", "xavier"),
        ("weight_init", "Xavier_initialization", "xavier"),
        ("loss", "cross_entropy_loss", "cross_entropy"),
        ("loss", "CrossEntropyLoss", "cross_entropy"),
        ("loss", "cel", "cross_entropy"),
        ("loss", "SquaredError", "mean_squared_error"),
        ("loss", "mse_loss", "mean_squared_error"),
    ],
)
def test_value_spellings_course_files_write(kind, spelling, canonical):
    assert names.canonical(kind, spelling) == canonical


@pytest.mark.parametrize(
    ("kind", "spelling", "why"),
    [
        ("optimizer", "adagrad", "fmnist has no adagrad optimizer"),
        ("optimizer", "AdaGrad", "fmnist has no AdaGrad optimizer"),
        ("optimizer", "eve", "fmnist has no eve optimizer"),
        ("optimizer", "adamw", "fmnist's AdamW is adam with --decoupled-weight-decay"),
        ("optimizer", "xavier", "xavier is a weight init, not an optimizer"),
        ("activation", "LeakyReLU", "fmnist has no LeakyReLU activation"),
        ("activation", "leaky_relu", "fmnist has no leaky_relu activation"),
        ("activation", "elu", "fmnist has no elu activation"),
        ("activation", "swish", "fmnist has no swish activation"),
        ("activation", "softmax", "the output layer is always softmax"),
        ("weight_init", "xavier_normal", "fmnist's Xavier is Glorot uniform"),
        ("weight_init", "he_uniform", "fmnist's he is Kaiming normal"),
        ("weight_init", "zeros", "all-zero weights cannot learn"),
        ("loss", "mae", "fmnist has no mean absolute error loss"),
        ("dataset", "cifar10", "fmnist has no cifar10 dataset"),
    ],
)
def test_things_fmnist_does_not_have_are_named_without_a_misleading_suggestion(kind, spelling, why):
    with pytest.raises(names.UnknownNameError) as caught:
        names.canonical(kind, spelling)
    message = str(caught.value)
    assert message.startswith(f"unknown {kind.replace('_', ' ')} {spelling!r}: {why}")
    assert "did you mean" not in message
    assert message.endswith(f"valid: {', '.join(names.shown(kind))}")


def test_suggestions_are_slips_of_the_keyboard_only():
    index = names._PARAMETER_INDEX
    assert names.suggest("nesterof", names._VALUE_INDEX["optimizer"]) == "nesterov"
    assert names.suggest("batch_szie", index) == "batch_size"  # two letters swapped
    assert names.suggest("weight_para", index) is None  # not weight_decay
    assert names.suggest("input_siz", index) is None
    assert names.suggest("hidden_size_1", index) is None  # hidden_size and hidden_sizes are both one edit away


# --- the README's table of spellings is this table ----------------------------------------------------------------

README = Path(__file__).parents[1] / "README.md"
BEGIN = "<!-- spellings: generated from fmnist/names.py by `python tests/test_names.py`; edit them there -->"
END = "<!-- spellings: end -->"


def spellings_markdown() -> str:
    """The README's tables of spellings, rendered from ``fmnist.names``."""
    out = ["| kind | canonical: also accepted |", "|---|---|"]
    for kind, table in names.VALUES.items():
        cells = [f"`{shown}`" + (f": {', '.join(others)}" if others else "") for shown, others in table.values()]
        out.append(f"| {kind.replace('_', ' ')} | {' · '.join(cells)} |")
    out += ["", '| kind | not in fmnist: refused, saying so (never a "did you mean" to another thing) |', "|---|---|"]
    for kind, table in names.NOT_AVAILABLE.items():
        out.append(f"| {kind.replace('_', ' ')} | {', '.join(table)} |")
    out += ["", "| option | also accepted (command line, sweep files, `--config` files) |", "|---|---|"]
    for field, others in names.PARAMETERS.items():
        spellings = [
            s for s in dict.fromkeys((*others, names.SHORT.get(field, field))) if s not in (field, *names.AMBIGUOUS)
        ]
        if spellings:
            out.append(f"| `{field}` | {', '.join(spellings)} |")
    out += ["", "| name | what it can mean |", "|---|---|"]
    for name, meanings in names.AMBIGUOUS.items():
        out.append(f"| `{name}` | {' · '.join(f'`{field}`: {what}' for field, what in meanings.items())} |")
    out += ["", "| fixed in every fmnist network | its one value | also written |", "|---|---|---|"]
    for name, (value, _, others) in names.CONSTANTS.items():
        out.append(f"| `{name}` | {value} | {', '.join(others)} |")
    dropped = [("counting", names.COUNT_WORDS), ("kinds", names.KIND_WORDS), ("others", names.FILLER_WORDS)]
    out += ["", "- words of a name that change nothing: " + "; ".join(f"{w}: {', '.join(t)}" for w, t in dropped)]
    spelled = [f"{word} ({', '.join(others)})" for word, others in names.WORD_SPELLINGS.items()]
    out.append("- words spelled several ways: " + "; ".join(spelled))
    metric = [f"{word or 'ignored'}: {', '.join(others)}" for word, others in names.METRIC_WORDS.items()]
    out.append("- words of metric names: " + "; ".join(metric))
    return "\n".join(out)


def readme_with_spellings(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{spellings_markdown()}\n{END}{tail}"


def test_the_readme_holds_exactly_the_table_of_spellings():
    text = README.read_text()
    assert BEGIN in text
    assert END in text
    assert readme_with_spellings(text) == text, "the README's spellings changed: run python tests/test_names.py"


if __name__ == "__main__":  # rewrite the README's tables of spellings from fmnist/names.py
    README.write_text(readme_with_spellings(README.read_text()))
