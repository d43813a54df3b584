"""``model.npz``: a trained model's weights and what is needed to rebuild and use it (never unpickled)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist.backend import get_backend
from fmnist.network import MLP
from fmnist.training.checkpoint import CheckpointError, load_archive, save_archive
from fmnist.training.config import TrainConfig


def save_model(
    path: str | Path, model: Any, config: TrainConfig, class_names: tuple[str, ...], norm: tuple[float, float]
) -> None:
    """Write ``model.npz``: every parameter by name plus what is needed to rebuild and use it."""
    meta = {
        "sizes": model.sizes,
        "activation": config.activation,
        "weight_init": config.weight_init,
        "dataset": config.dataset,
        "class_names": list(class_names),
        "normalization": list(norm),
    }
    arrays = {name: model.backend.to_numpy(value) for name, value in model.state_dict().items()}
    save_archive(path, "model", meta, arrays)


def load_model(path: str | Path, backend: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model saved in a ``model.npz``.

    Raises:
        CheckpointError: the file is missing, damaged, foreign, or its arrays do not fit its description.
    """
    meta, arrays = load_archive(path, "model")
    try:
        model = MLP(meta["sizes"], activation=meta["activation"], backend=get_backend(backend), seed=None)
        model.load_state_dict(arrays)
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: the weights do not match the described model ({err})") from err
    return model, meta
