"""``model.npz`` across versions: a CNN saved before the layers in front of batch norm lost their bias still
loads, with its biases, and computes what it computed."""

import numpy as np

from fmnist.files import load_archive, save_archive
from fmnist.network import conv_net
from fmnist.network.layers import Conv2d
from fmnist.rundir.modelio import load_model, save_model
from fmnist.training.config import TrainConfig


def test_a_cnn_whose_convolutions_have_biases_still_loads(tmp_path):
    model = conv_net((1, 8, 8), conv_channels=(4,), hidden=(6,), seed=0)
    assert all(not layer.bias for layer in model.layers if isinstance(layer, Conv2d))
    path = tmp_path / "model.npz"
    save_model(path, model, TrainConfig(model="cnn"), tuple("abcdefghij"), (0.0, 1.0))
    meta, arrays = load_archive(path, "model")
    for layer in meta["architecture"]["layers"]:  # as files written before layers could go without a bias
        if layer["type"] == "Conv2d":
            del layer["bias"]
    conv = next(i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2d))
    arrays[f"{conv}.bias"] = np.full(4, 0.25, np.float32)
    save_archive(path, "model", meta, arrays)

    loaded, _ = load_model(path)
    assert loaded.layers[conv].bias
    np.testing.assert_array_equal(loaded.state_dict()[f"{conv}.bias"], np.full(4, 0.25, np.float32))
    x = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    loaded.eval()
    model.eval()
    # in evaluation batch norm subtracts the running mean (0 here), so the old bias shows up shifted, not removed
    assert not np.allclose(loaded.forward(x), model.forward(x))
    loaded.state_dict()[f"{conv}.bias"][...] = 0.0
    np.testing.assert_allclose(loaded.forward(x), model.forward(x), rtol=1e-6)
