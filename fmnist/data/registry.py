"""The dataset registry: class names, file names, mirrors (in order) and pinned SHA-256 hashes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileSpec:
    """One IDX file of a dataset.

    Attributes:
        role: ``train_images``, ``train_labels``, ``test_images`` or ``test_labels``.
        filename: the ``.gz`` name on the mirrors.
        sha256: the pinned hash.
        hash_of: ``"content"`` (the decompressed IDX bytes) or ``"gz"`` (the compressed file as served).
    """

    role: str
    filename: str
    sha256: str
    hash_of: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to find, fetch and verify one dataset."""

    name: str
    class_names: tuple[str, ...]
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 60000, "test": 10000})

    def file(self, role: str) -> FileSpec:
        return next(f for f in self.files if f.role == role)


def _files(hashes: dict[str, str], hash_of: str) -> tuple[FileSpec, ...]:
    stems = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    return tuple(FileSpec(role, f"{stem}.gz", hashes[role], hash_of) for role, stem in stems.items())


# Fashion-MNIST is pinned on the decompressed IDX bytes: Debian's package re-gzips the files, so their .gz hashes
# differ from the official ones while the content is identical.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    files=_files(
        {
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        hash_of="content",
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

# MNIST is pinned on the .gz files as the mirrors serve them (no local copy exists to hash the content).
MNIST = DatasetSpec(
    name="mnist",
    class_names=tuple(str(d) for d in range(10)),
    files=_files(
        {
            "train_images": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train_labels": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "test_images": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "test_labels": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        hash_of="gz",
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    system_dirs=("/usr/share/datasets/mnist",),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (FASHION_MNIST, MNIST)}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec for ``fashion-mnist`` or ``mnist`` (``fashion_mnist``, the DA6401 spelling, is accepted).

    Raises:
        ValueError: unknown name, listing the valid ones.
    """
    key = str(name).lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: fashion-mnist|fashion_mnist, mnist")
    return DATASETS[key]
