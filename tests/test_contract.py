"""The predictor contract ([pipeline]): tiled and untiled slices answer the same questions, and
one factory builds every app's predictor."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam.stacks.contract import SlicePredictor, units_of
from napari_sam.stacks.factory import make_predictor
from napari_sam.stacks.tiling import plan_tiling
from napari_sam.train.synthetic import make_nuclei_2d

SEED = 31337


@pytest.fixture(scope="module")
def tiny():
    from napari_sam import create_model

    return create_model("sam_tiny_nuclei", pretrained=True)


@pytest.fixture(scope="module")
def image():
    return make_nuclei_2d((300, 280), seed=SEED)[0]


def test_both_kinds_keep_the_contract(tiny, image):
    from napari_sam.stacks import StackView
    from napari_sam.stacks.stack_predictor import StackPredictor
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    view = StackView(image, "YX")
    tiling = plan_tiling(image.shape, (256, 256), tile=128)
    whole, tiled = make_predictor(tiny, view), make_predictor(tiny, view, tiling)
    assert type(whole) is StackPredictor and type(tiled) is TiledPredictor
    assert isinstance(whole, SlicePredictor) and isinstance(tiled, SlicePredictor)
    assert (whole.unit, whole.windows, whole.window(0), whole.inner(0)) == (
        "slice", 1, (0, 300, 0, 280), (0, 300, 0, 280))  # fmt: skip
    assert (tiled.unit, tiled.windows) == ("tile", len(tiling)) == units_of(tiling)
    assert whole.window_shape == (300, 280) and tiled.window_shape == (128, 128)
    with pytest.raises(IndexError):
        whole.window(1)
    # the inner regions partition the slice, for both
    for sp in (whole, tiled):
        covered = np.zeros(image.shape, int)
        for t in range(sp.windows):
            y0, y1, x0, x1 = sp.inner(t)
            covered[y0:y1, x0:x1] += 1
        assert (covered == 1).all()
    assert not whole.ready_tiles(()).any()
    emb = whole.tile_embedding((), 0)
    assert whole.ready_tiles(()).tolist() == [True]
    np.testing.assert_array_equal(emb, whole.get_embedding(()))
    # one object within its window: the whole slice untiled, the very masks of predict
    pts, lbl = np.array([[140.0, 150.0]]), np.array([1.0])
    masks, scores, logits, window = whole.predict_window((), pts, lbl, None, True)
    want = whole.predict((), points=pts, labels=lbl)
    assert window == (0, 300, 0, 280)
    for a, b in zip((masks, scores, logits), want, strict=True):
        np.testing.assert_array_equal(a, b)
    masks, scores, _, (y0, y1, x0, x1) = tiled.predict_window((), pts, lbl, None, True)
    assert masks.shape[1:] == (y1 - y0, x1 - x0) and (y1 - y0, x1 - x0) != (300, 280)
    # mask prompts: a declared capability, not a question of kind
    assert whole.supports_mask_prompts and not tiled.supports_mask_prompts
    low = whole.predict_window((), pts, lbl, None, False)[2]
    refined = whole.predict_window((), pts, lbl, None, False, masks=low)
    assert refined[0].shape == (1, 300, 280)
    with pytest.raises(ValueError, match="mask prompts are not supported on a tiled image"):
        tiled.predict_window((), pts, lbl, None, False, masks=low)


def test_every_app_builds_its_predictor_with_the_one_factory(tmp_path, monkeypatch, capsys):
    """The command line's ``auto`` (whose ``label_file`` the dask tasks run too, and whose
    ``make_predictor`` the tile workers call), ``embed`` and the napari session all reach
    :func:`napari_sam.stacks.factory.make_predictor`; ``auto`` and the widget's "Segment
    everything" reach :func:`napari_sam.segment.factory.make_segmenter`."""
    from napari_sam.segment import factory as segmenters
    from napari_sam.stacks import factory
    from test_cli_embed import SMALL, run_main, stack, write_weights

    made, segmenter_made = [], []

    def spy(*args, **kwargs):
        sp = make_predictor(*args, **kwargs)
        made.append(type(sp).__name__)
        return sp

    real_segmenter = segmenters.make_segmenter

    def segmenter_spy(*args, **kwargs):
        seg = real_segmenter(*args, **kwargs)
        segmenter_made.append(type(seg).__name__)
        return seg

    monkeypatch.setattr(factory, "make_predictor", spy)
    monkeypatch.setattr(segmenters, "make_segmenter", segmenter_spy)
    weights = write_weights(tmp_path / "w.npz", SMALL)
    model = ["--model", "sam_vit_b", "--weights", weights,
             *[f"--override={k}={v}" for k, v in _options(SMALL)]]  # fmt: skip
    tifffile.imwrite(tmp_path / "x.tif", stack(1)[0])
    code, _, err = run_main(capsys, "auto", tmp_path / "x.tif", "--out", tmp_path / "l.tif",
                            *model, "--points-per-side", "2")  # fmt: skip
    assert code == 0, err
    code, _, err = run_main(capsys, "embed", tmp_path / "x.tif", "--out", tmp_path / "s.zarr",
                            *model, "--tile", "64")  # fmt: skip
    assert code == 0, err
    assert made == ["StackPredictor", "TiledPredictor"]
    assert segmenter_made == ["AutomaticMaskGenerator"]
    pytest.importorskip("napari")
    from napari_sam._napari._everything import segment_slices
    from napari_sam._napari._session import Geometry, Session
    from napari_sam.weights import create_model

    session = Session(create_model("sam_tiny_nuclei", pretrained=True),
                      np.zeros((2, 64, 64), np.uint8), Geometry((2, 64, 64)))  # fmt: skip
    assert made[-1] == "StackPredictor" and session.tiling is None and not session.tiled
    list(segment_slices(session, [(0,)]))  # the shipped model has a decoder: AIS
    assert segmenter_made == ["AutomaticMaskGenerator", "InstanceSegmenter"]


def _options(cfg):
    import json

    return [(k, json.dumps(v)) for k, v in cfg.items()]


def test_few_places_outside_stacks_ask_which_kind_of_predictor_they_hold():
    """Branches on tiled versus untiled outside ``stacks/``: ``hasattr``/``getattr`` probes of
    a predictor, ``isinstance(..., TiledPredictor)``, ``tiling is (not) None``, the napari
    session's ``tiled``, and the declared ``embeds_per_prompt`` (counted too: a branch all
    the same)."""
    src = Path(__file__).parents[1] / "src" / "napari_sam"
    probe = re.compile(r"(hasattr|getattr)\((sp|self\.sp|session\.sp|stack_predictor)\b"
                       r"|isinstance\([^)]*TiledPredictor|tiling is (not )?None"
                       r"|\w\.tiled\b(?!\.)|embeds_per_prompt")  # fmt: skip
    places = [f"{p.relative_to(src)}:{n}" for p in sorted(src.rglob("*.py"))
              if "stacks" not in p.relative_to(src).parts
              for n, line in enumerate(p.read_text().splitlines(), 1)
              if probe.search(line.split("#")[0]) and "def tiled" not in line]  # fmt: skip
    assert len(places) <= LIMIT, places


LIMIT = 6  # about 30 before the contract; [pipeline] asks for at most 6
