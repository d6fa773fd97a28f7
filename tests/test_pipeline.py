"""Settings parsed once ([pipeline]): per file ``auto`` opens its input once, builds the model
configuration once and parses the overrides not at all (they were parsed once for the run)."""

from __future__ import annotations

import json
from collections import Counter

import tifffile

from napari_sam.batch import pipeline
from napari_sam.weights import factory, registry


def test_auto_parses_once_and_opens_each_input_once(tmp_path, monkeypatch, capsys):
    from test_cli_embed import SMALL, run_main, stack, write_weights

    weights = write_weights(tmp_path / "w.npz", SMALL)
    folder = tmp_path / "in"
    folder.mkdir()
    names = [folder / f"x{k}.tif" for k in range(3)]
    for k, name in enumerate(names):
        tifffile.imwrite(name, stack(1, seed=k)[0])
    counts: Counter = Counter()
    opened: Counter = Counter()

    def counting(module, name, key):
        real = getattr(module, name)

        def spy(*args, **kwargs):
            counts[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    counting(pipeline, "parse_overrides", "overrides")
    counting(registry, "model_config", "config")
    counting(factory, "model_config", "config")
    counting(pipeline, "open_input", "open")

    class CountedTiff(tifffile.TiffFile):
        def __init__(self, path, *args, **kwargs):
            opened[str(path)] += 1
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "TiffFile", CountedTiff)
    code, _, err = run_main(
        capsys, "auto", folder, "--out", tmp_path / "out", "--model", "sam_vit_b",
        "--weights", weights, *[f"--override={k}={json.dumps(v)}" for k, v in SMALL.items()],
        "--points-per-side", "2",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == [
        f"x{k}_labels.tif" for k in range(3)
    ]
    # once for the run: the overrides, and the configuration they are checked with
    assert counts["overrides"] == 1, counts
    assert counts["open"] == len(names), counts  # each input once
    assert counts["config"] == 1 + len(names), counts  # the check, then once per file
    assert all(opened[str(name)] == 1 for name in names), opened  # metadata: the open file
    # the labels keep the input's metadata, read from the open file
    with tifffile.TiffFile(tmp_path / "out" / "x0_labels.tif") as tif:
        assert tif.pages[0].software == "napari-sam"


def test_resolved_settings_are_frozen_and_typed():
    import dataclasses

    import pytest

    from napari_sam.batch.errors import InputError
    from napari_sam.batch.settings import LabelSettings

    s = LabelSettings(input="x.tif", out="y.tif", model="sam_tiny_nuclei",
                      override=("mask_threshold=0.5",), channels="single:0")  # fmt: skip
    r = pipeline.resolve(s)
    assert r.override_dict == {"mask_threshold": 0.5} and r.weights is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.model = "sam_vit_b"
    with pytest.raises(InputError, match="--override"):
        pipeline.resolve(s.replace(override=("embed_dim=7",)))
    with pytest.raises(InputError, match="--channels"):
        pipeline.resolve(s.replace(channels="bogus"))
