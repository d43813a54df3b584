"""The Colab notebook runs top to bottom on the CPU (with its smoke settings) against the real Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "fmnist_colab.ipynb"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install nbclient ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install nbclient ipykernel)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install ipykernel)")


def outputs(notebook, kind: str) -> str:
    """Everything the executed cells printed (``stream``) or displayed as HTML (``html``)."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            if kind == "html" and "text/html" in output.get("data", {}):
                parts.append(output["data"]["text/html"])
    return "".join(parts)


@pytest.mark.slow
def test_the_colab_notebook_runs_on_the_cpu(tmp_path, monkeypatch):
    if not (SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real Fashion-MNIST is not in {SYSTEM_DIR} (apt-get install dataset-fashion-mnist)")
    monkeypatch.setenv("FMNIST_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("FMNIST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("COLUMNS", "110")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it clean"
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    printed = outputs(notebook, "stream")
    assert "already installed" in printed  # no network: the install cell saw the package
    assert "fmnist info" in printed
    assert "numpy" in printed
    assert "test accuracy" in printed
    assert "samples/s" in printed  # the bench table
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert (runs[0] / "report.html").is_file()
    shown = outputs(notebook, "html")
    assert shown.startswith("<div><iframe srcdoc=")
    assert "fmnist run report" in shown
