"""[first-use] 5: the apps start with the best model on this machine, and say which and why."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam.weights.choice import default_model, is_on_disk
from napari_sam.weights.micro_sam import MICRO_SAM_MODELS


@pytest.fixture
def caches(tmp_path, monkeypatch):
    ours, theirs = tmp_path / "ours", tmp_path / "micro_sam"
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(ours))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(theirs))
    (theirs / "models").mkdir(parents=True)
    return ours, theirs / "models"


def _put(folder, weight, micro_sam_name=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (weight.micro_sam_key if micro_sam_name else weight.filename)).write_bytes(b"x")


def test_nothing_on_disk_gives_the_shipped_model_and_says_why(caches):
    choice = default_model()
    assert choice.name == "sam_tiny_nuclei"
    assert "works offline" in choice.reason and "--model vit_b_lm" in choice.reason


def test_a_cached_microscopy_model_is_preferred(caches):
    ours, theirs = caches
    lm, lm_l = MICRO_SAM_MODELS["vit_b_lm"], MICRO_SAM_MODELS["vit_l_lm"]
    _put(ours, lm.encoder)  # the encoder alone is not enough
    assert not is_on_disk("vit_b_lm") and default_model().name == "sam_tiny_nuclei"
    _put(theirs, lm_l.encoder, True)  # micro-sam's own cache counts too
    _put(theirs, lm_l.decoder, True)
    assert default_model().name == "vit_l_lm"
    _put(ours, lm.decoder)
    choice = default_model()
    assert choice.name == "vit_b_lm" and "found on this machine" in choice.reason


def test_cli_without_model_says_which_it_uses(caches, tmp_path, capsys):
    from napari_sam.cli import main

    image = np.zeros((96, 96), np.uint16)
    image[30:60, 30:60] = 1000
    tifffile.imwrite(tmp_path / "a.tif", image)
    assert main(["auto", str(tmp_path / "a.tif"), "--out", str(tmp_path / "a_labels.tif")]) == 0
    err = capsys.readouterr().err
    assert "napari-sam: model sam_tiny_nuclei: the shipped model (works offline)" in err
    assert (tmp_path / "a_labels.tif").is_file()


def test_a_model_to_download_is_asked_for_with_its_size(caches):
    from napari_sam.weights.choice import download_needed
    from napari_sam.weights.download import OFFICIAL_WEIGHTS

    assert download_needed("sam_tiny_nuclei") is None  # shipped
    q = download_needed("sam_vit_b")
    size = OFFICIAL_WEIGHTS["sam_vit_b"].size / 1e6
    assert q.startswith("sam_vit_b needs 1 file(s) downloaded once (") and f"{size:,.0f} MB" in q
    assert "dl.fbaipublicfiles.com" in q and q.endswith("Download now?")
    q = download_needed("vit_b_lm")
    assert "2 file(s)" in q and "about 375 MB" in q
    ours, _ = caches
    lm = MICRO_SAM_MODELS["vit_b_lm"]
    _put(ours, lm.encoder)
    assert "1 file(s)" in download_needed("vit_b_lm")
    _put(ours, lm.decoder)
    assert download_needed("vit_b_lm") is None
