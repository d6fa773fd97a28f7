"""The notebooks in ``notebooks/`` run top to bottom, headless, with this environment's Python."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec in a temporary Jupyter data dir, running ``sys.executable``."""
    data = tmp_path_factory.mktemp("jupyter")
    spec = data / "kernels" / "napari-sam-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "napari-sam test", "language": "python"})
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(data))
    yield "napari-sam-test"
    mp.undo()


@pytest.mark.parametrize("name", ["01_python_api.ipynb", "03_batch_with_dask.ipynb"])
def test_notebook_runs(name, kernel, tmp_path):
    if name.startswith("03"):
        pytest.importorskip("dask.distributed")
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    nb = nbformat.read(tmp_path / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if name.startswith("01"):
        assert any("image/png" in o.get("data", {}) for o in outputs), "no figure shown"
        assert (tmp_path / "nuclei.emb.zarr").exists()
    else:
        assert len(list((tmp_path / "labels_dask").glob("*_labels.tif"))) == 3
