import pytest

from fmnist.network import MLP, get_activation, get_initializer, get_loss, get_optimizer


@pytest.mark.parametrize(
    ("getter", "names"),
    [
        (get_activation, ["identity", "sigmoid", "tanh", "ReLU", "relu"]),
        (get_initializer, ["random", "Xavier", "xavier", "he"]),
        (get_loss, ["cross_entropy", "mean_squared_error"]),
    ],
)
def test_da6401_and_lowercase_names_are_accepted(getter, names):
    for name in names:
        assert getter(name) is not None


@pytest.mark.parametrize(
    ("getter", "listing"),
    [
        (get_activation, "identity, sigmoid, tanh, ReLU|relu"),
        (get_initializer, "random, Xavier|xavier, he"),
        (get_loss, "cross_entropy, mean_squared_error"),
    ],
)
def test_unknown_names_list_the_valid_ones(getter, listing):
    with pytest.raises(ValueError, match=listing.replace("|", r"\|")):
        getter("softplus")


def test_optimizer_names():
    params = MLP([3, 2], seed=0).parameters()
    for name in ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "Adam"]:
        assert get_optimizer(name, params).t == 0


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
