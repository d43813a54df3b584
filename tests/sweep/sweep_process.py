"""``python tests/sweep_process.py ARGS`` runs ``fmnist ARGS`` as the sweep tests need a real process to: on a tiny
data set, killable in the middle of a trial, as "another machine".

Its settings come from the environment, and apply to the worker processes a sweep spawns as well (they re-run this
file as their main module):

- ``FMNIST_TEST_TINY_DATA``: a directory of tiny Fashion-MNIST files (``helpers.write_tiny_mnist``), trusted by
  their own hashes;
- ``FMNIST_TEST_KILL=TRIAL:EPOCHS``: SIGKILL this process in the middle of the epoch after ``EPOCHS`` finished
  epochs of trial number ``TRIAL``;
- ``FMNIST_TEST_HOST``: the host name workers record (a second machine);
- ``FMNIST_TEST_EPOCH_LOG``: a file that gets a JSON line per epoch trained (trial, epoch, pid, BLAS threads).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import signal
from pathlib import Path


def _trust_tiny_data(directory: Path) -> None:
    from fmnist.data import FASHION_MNIST, registry
    from fmnist.data.registry import FileSpec

    files = []
    for file in FASHION_MNIST.files:
        packed = (directory / file.filename).read_bytes()
        digest = hashlib.sha256(gzip.decompress(packed) if file.hash_of == "content" else packed).hexdigest()
        files.append(FileSpec(file.role, file.filename, digest, file.hash_of))
    sizes = {"train": _count(directory / FASHION_MNIST.file("train_labels").filename)}
    sizes["test"] = _count(directory / FASHION_MNIST.file("test_labels").filename)
    spec = dataclasses.replace(FASHION_MNIST, files=tuple(files), mirrors=(), system_dirs=(), sizes=sizes)
    registry.DATASETS["fashion-mnist"] = spec


def _count(labels: Path) -> int:
    return int.from_bytes(gzip.decompress(labels.read_bytes())[4:8], "big")


def _faults() -> None:
    from fmnist.sweep import liveness, study

    if os.environ.get("FMNIST_TEST_HOST"):
        liveness.HOST = os.environ["FMNIST_TEST_HOST"]
    kill = os.environ.get("FMNIST_TEST_KILL")
    log = os.environ.get("FMNIST_TEST_EPOCH_LOG")
    original = study.Pruner.on_epoch_end

    def on_epoch_end(self, trainer, metrics):  # type: ignore[no-untyped-def]
        if log:
            from threadpoolctl import threadpool_info

            blas = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=None)
            line = {"trial": self.trial.number, "epoch": metrics.epoch, "pid": os.getpid(), "blas_threads": blas}
            with open(log, "a") as handle:
                handle.write(json.dumps(line) + "\n")
        original(self, trainer, metrics)

    def on_step_end(self, trainer, step):  # type: ignore[no-untyped-def]
        trial, epochs = (int(part) for part in kill.split(":"))  # type: ignore[union-attr]
        steps = -(-trainer.train.n // trainer.batch_size)
        if self.trial.number == trial and trainer.epoch == epochs and step >= epochs * steps + steps // 2:
            os.kill(os.getpid(), signal.SIGKILL)  # in the middle of an epoch, as a machine dies

    study.Pruner.on_epoch_end = on_epoch_end
    if kill:
        study.Pruner.on_step_end = on_step_end


if os.environ.get("FMNIST_TEST_TINY_DATA"):
    _trust_tiny_data(Path(os.environ["FMNIST_TEST_TINY_DATA"]))
_faults()

if __name__ == "__main__":
    from fmnist.cli import main

    main()
