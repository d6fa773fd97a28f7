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
    code, _, err = run_main(capsys, "auto", img, "--out", tmp_path / "l.tif")
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
