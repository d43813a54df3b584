import dataclasses

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
        (get_activation, "relu6", "identity, sigmoid, tanh, ReLU", "ReLU"),
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
        match=r"unknown parameter 'learning_rates' \(did you mean learning_rate\?\); valid: dataset, epochs",
    ):
        names.parameter("learning_rates")
    with pytest.raises(names.UnknownNameError, match="did you mean hidden_layers"):
        names.parameter("hidden_layer")
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
        match=r"^--optimizer: unknown optimizer 'adamw' \(did you mean adam\?\); "
        r"valid: sgd, momentum, nag, rmsprop, adam, nadam$",
    ):
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
    with pytest.raises(ConfigError, match="unknown parameter 'learning_rates'"):
        TrainConfig.from_dict({"learning_rates": 0.01})


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
