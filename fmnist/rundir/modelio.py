"""``model.npz``: a trained model's parameters and buffers, and what is needed to rebuild and use it: the
architecture (format version 2), the dataset's class names and the pixel normalisation. Never unpickled; files of
version 1 (MLPs described by their sizes and activation) keep loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.backend import get_backend
from fmnist.files import ArchiveError, load_archive, save_archive
from fmnist.network import MLP, model_from_spec
from fmnist.training.config import TrainConfig


def save_model(
    path: str | Path, model: Any, config: TrainConfig, class_names: tuple[str, ...], norm: tuple[float, float]
) -> None:
    """Write ``model.npz``: every parameter and buffer by name plus what is needed to rebuild and use it."""
    meta = {
        "architecture": model.spec(),
        "description": model.describe(),
        "weight_init": config.weight_init,
        "dataset": config.dataset,
        "class_names": list(class_names),
        "normalization": list(norm),
    }
    if isinstance(model, MLP):  # what version 1 readers look for
        meta.update(sizes=model.sizes, activation=model.activation.name)
    arrays = {name: model.backend.to_numpy(value) for name, value in model.state_dict().items()}
    save_archive(path, "model", meta, arrays)


def load_model(path: str | Path, backend: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model saved in a ``model.npz``.

    Raises:
        ArchiveError: the file is missing, damaged, foreign, or its arrays do not fit its description.
    """
    meta, arrays = load_archive(path, "model")
    try:
        backend = get_backend(backend)
        if "architecture" in meta:
            model = model_from_spec(meta["architecture"], backend)
        else:
            model = MLP(meta["sizes"], activation=meta["activation"], backend=backend, seed=None)
        model.load_state_dict(arrays)
    except (KeyError, ValueError, TypeError) as err:
        raise ArchiveError(f"{path}: the weights do not match the described model ({err})") from err
    return model, meta
