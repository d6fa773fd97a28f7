"""What first-time users trip over ([newcomer]): each point a test."""

from __future__ import annotations

import dataclasses
import socket

import tifffile

from test_bad_input import one_error
from test_cli_embed import run_main, stack


def _dead_url(name: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/{name}"


def test_offline_default_model_error_ends_with_the_path_and_names_the_offline_model(
    tmp_path, capsys, monkeypatch
):
    """Nothing cached, no network: one line, not cut in the advice, ending with the exact
    path to copy the checkpoint to, and naming the model that works offline."""
    from napari_sam.weights import registry
    from napari_sam.weights.download import cache_dir

    entry = registry.model_entry("sam_vit_b")
    dead = dataclasses.replace(entry.weights, url=_dead_url(entry.weights.filename))
    monkeypatch.setitem(registry._REGISTRY, "sam_vit_b", dataclasses.replace(entry, weights=dead))
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, stack(1)[0])
    code, _, err = run_main(capsys, "auto", img, "--out", tmp_path / "l.tif", "--model",
                            "sam_vit_b")  # fmt: skip
    one_error(code, err, r"--weights: Could not download the SAM checkpoint sam_vit_b")
    line = err[-1]
    target = str(cache_dir() / entry.weights.filename)
    assert line.endswith(f"copy it to exactly: {target}"), line
    assert "The shipped model 'sam_tiny_nuclei' works offline." in line
    assert "[...]" not in line.split("works offline")[-1]  # nothing of the advice cut


def test_long_messages_are_cut_before_the_advice_never_in_it():
    from napari_sam.batch.errors import MAX_MESSAGE, InputError

    text = "x" * 2000 + " copy it to exactly: /the/path/file.pth"
    message = str(InputError("--weights", text))
    assert len(message) <= MAX_MESSAGE + len("--weights: ") + 10
    assert message.endswith("copy it to exactly: /the/path/file.pth") and "[...]" in message


def test_progress_in_a_log_file_has_no_cursor_movements(tmp_path):
    """Output that is not a terminal (a log, a notebook cell) gets one bar at a time: no
    nested bars and their ``ESC [A`` codes."""
    from napari_sam.train.synthetic import make_nuclei_2d
    from test_cli_embed import cli

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "big.tif", make_nuclei_2d((400, 300), seed=3)[0])
    tifffile.imwrite(tmp_path / "in" / "small.tif", stack(2), metadata={"axes": "ZYX"})
    res = cli("auto", tmp_path / "in", "--out", tmp_path / "out", "--model", "sam_tiny_nuclei",
              "--method", "amg", "--points-per-side", "4", "--tile", "256")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\x1b[A" not in res.stderr and "slices" in res.stderr
    assert len(list((tmp_path / "out").glob("*_labels.tif"))) == 2


def test_verbose_tells_start_up_from_segmentation(tmp_path):
    from test_cli_embed import cli

    tifffile.imwrite(tmp_path / "img.tif", stack(1)[0])
    res = cli("auto", tmp_path / "img.tif", "--out", tmp_path / "l.tif", "--model",
              "sam_tiny_nuclei", "--method", "amg", "--points-per-side", "4", "-v")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    times = [ln for ln in res.stderr.splitlines() if ln.startswith("napari-sam: times: ")]
    assert len(times) == 1, res.stderr[-2000:]
    import re

    assert re.fullmatch(r"napari-sam: times: TensorFlow import [\d.]+ s, model load [\d.]+ s, "
                        r"segmentation [\d.]+ s, total [\d.]+ s", times[0]), times  # fmt: skip


def test_the_api_is_listed_by_dir_and_help():
    import pydoc

    import napari_sam

    names = dir(napari_sam)
    assert {"create_model", "SAMPredictor", "AutomaticMaskGenerator", "list_models"} <= set(names)
    text = pydoc.render_doc(napari_sam, renderer=pydoc.plaintext)
    assert "create_model" in text and "SAMPredictor" in text
