"""The notebooks in ``notebooks/`` run top to bottom, headless, with this environment's Python.

The napari notebook (02) needs a real X display: ``$DISPLAY``, else a private Xvfb started for
it (as the GUI tests do, see ``napari_fixtures``); it is skipped, with the reason, only if no
Xvfb can be started. Its kernel is a fresh process, so TensorFlow loads after napari's OpenGL.
"""

from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="module")
def display():
    """An X display for the napari notebook: ``$DISPLAY``, else a private Xvfb."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    from napari_fixtures import _start_xvfb

    proc, display = _start_xvfb()
    if proc is None:
        pytest.skip(f"no X display for the napari notebook: {display}")
    try:
        yield display
    finally:
        proc.terminate()
        proc.wait(10)


def test_napari_notebook_runs(kernel, display, tmp_path, monkeypatch):
    pytest.importorskip("napari")
    name = "02_napari_from_jupyter.ipynb"
    monkeypatch.setenv("DISPLAY", display)  # the kernel inherits the environment
    # napari turns on IPython's Qt event loop integration ('%gui qt') when it makes a viewer;
    # a kernel executing cells back to back then sometimes never sees the next cell (a known
    # race, jupyter/nbclient#97, napari/napari#1568). The notebook processes Qt events itself
    # where it waits, so the test runs it with the integration off.
    monkeypatch.setenv("NAPARI_APPLICATION_IPY_INTERACTIVE", "false")
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":  # a real GL canvas, as the GUI tests
        monkeypatch.delenv("QT_QPA_PLATFORM")
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    nb = nbformat.read(tmp_path / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "TensorFlow loaded: True" in text and "committed ids:" in text, text
    assert "viewer closed" in text, text
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure shown"
