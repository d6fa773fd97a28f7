"""Prompted masks redrawn at an object's half maximum and cut to their box
(``napari_sam.predict.outline``), as the apps do for ``sam_tiny_nuclei`` ([tiny-v2])."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sam.masks import iou
from napari_sam.predict.outline import (
    OutlineSettings,
    outline_settings,
    redraw_masks,
    redraw_outline,
)
from napari_sam.stacks.factory import make_predictor, model_outline
from napari_sam.stacks.tiling import plan_tiling
from napari_sam.train.synthetic import make_nuclei_2d


def _nucleus(shape=(80, 80), centre=(40, 40), radius=12, blur=2.5, bright=200.0, bg=20.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    image = bg + (bright - bg) * ndimage.gaussian_filter(disc.astype(np.float32), blur)
    return image, disc  # a blurred disc: its half maximum is the disc's own edge


@pytest.mark.parametrize("grow", [-2, 2])
def test_a_mask_off_by_two_pixels_comes_back_to_the_half_maximum(grow):
    image, disc = _nucleus()
    off = (ndimage.binary_dilation(disc, iterations=grow) if grow > 0
           else ndimage.binary_erosion(disc, iterations=-grow))  # fmt: skip
    settings = OutlineSettings(inner=3, outer=3)
    redrawn = redraw_outline(image, off, settings)
    assert iou(off, disc) < 0.8
    assert iou(redrawn, disc) > max(0.9, iou(off, disc) + 0.15)


def test_nothing_farther_than_the_band_changes():
    image, disc = _nucleus()
    off = ndimage.binary_dilation(disc, iterations=4)  # 4 px out, the band reaches 1 px in
    redrawn = redraw_outline(image, off, OutlineSettings(inner=1, outer=0))
    assert (redrawn <= off).all()
    assert (redrawn >= ndimage.binary_erosion(off, iterations=1)).all()


def test_a_box_cuts_a_mask_that_spills_into_a_neighbour():
    image, disc = _nucleus(shape=(60, 100), centre=(30, 35), radius=10)
    other, second = _nucleus(shape=(60, 100), centre=(30, 53), radius=10)  # pressed together
    image = np.maximum(image, other)
    both = disc | second  # SAM's mask took the neighbour in
    rows, cols = np.nonzero(disc)
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], np.float32)
    out = redraw_masks(image, both[None], OutlineSettings(), box)[0]
    assert iou(out, disc) > 0.9
    kept = redraw_masks(image, both[None], OutlineSettings(clip_to_box=False), box)[0]
    assert iou(kept, disc) < 0.6  # without the cut the neighbour stays


def test_empty_masks_and_flat_images_are_left_alone():
    image, disc = _nucleus()
    empty = np.zeros_like(disc)
    assert not redraw_outline(image, empty, OutlineSettings()).any()
    flat = np.full(disc.shape, 7.0, np.float32)
    np.testing.assert_array_equal(redraw_outline(flat, disc, OutlineSettings()), disc)
    with pytest.raises(ValueError, match="image: expected shape"):
        redraw_masks(image[:10], disc[None], OutlineSettings())


def test_settings_are_checked():
    with pytest.raises(ValueError, match="level: expected a fraction"):
        OutlineSettings(level=1.0)
    with pytest.raises(ValueError, match="inner: expected pixels"):
        OutlineSettings(inner=-1)
    with pytest.raises(ValueError, match="outline: unknown settings"):
        outline_settings({"levle": 0.5})
    assert outline_settings({}) is None
    assert outline_settings({"level": 0.4}) == OutlineSettings(level=0.4)


@pytest.fixture(scope="module")
def tiny():
    from napari_sam import create_model

    return create_model("sam_tiny_nuclei", pretrained=True)


def test_the_apps_redraw_sam_tiny_nuclei_masks_and_only_its(tiny):
    from napari_sam.weights.registry import model_entry

    assert model_outline(tiny) == outline_settings(model_entry("sam_tiny_nuclei").outline)
    assert model_outline(tiny) is not None and model_outline(tiny).min_solidity == 0.98
    for name in ("sam_vit_b", "sam_vit_h", "vit_b_lm", "vit_t_lm"):  # masks stay Meta's
        assert not model_entry(name).outline


@pytest.mark.parametrize("tiled", [False, True])
def test_predictors_give_the_redrawn_masks(tiny, tiled):
    from napari_sam.masks import bounding_box
    from napari_sam.stacks import StackView

    image, labels = make_nuclei_2d((300, 280), seed=4242, edge_level=0.5)
    view = StackView(image, "YX")
    tiling = plan_tiling(image.shape, (256, 256), tile=128) if tiled else None
    sp = make_predictor(tiny, view, tiling)
    raw = make_predictor(tiny, view, tiling, outline=None)
    assert sp.outline == model_outline(tiny) and raw.outline is None
    truth = labels == labels[150, 140] if labels[150, 140] else labels == 1
    box = bounding_box(truth)
    got, _, _, window = sp.predict_window((), boxes=box, multimask_output=False)
    base, _, _, same = raw.predict_window((), boxes=box, multimask_output=False)
    assert window == same
    want = redraw_masks(raw.outline_image((), window), base, sp.outline,
                        box - np.array([window[2], window[0]] * 2))  # fmt: skip
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, base)
    # the batched call of the current slice gives the same masks, in slice pixels
    masks, _, _ = sp.predict((), boxes=box[None, None], multimask_output=False)
    y0, y1, x0, x1 = window
    np.testing.assert_array_equal(masks[0, 0, y0:y1, x0:x1], got[0])
    # logits are SAM's
    lg, _, _, _ = sp.predict_window((), boxes=box, multimask_output=False, return_logits=True)
    lr, _, _, _ = raw.predict_window((), boxes=box, multimask_output=False, return_logits=True)
    np.testing.assert_array_equal(lg, lr)


def test_a_click_prefers_a_solid_candidate():
    from napari_sam.predict.outline import mask_solidity as solidity
    from napari_sam.predict.outline import preferred_candidate

    _, disc = _nucleus(shape=(60, 100), centre=(30, 35), radius=10)
    _, second = _nucleus(shape=(60, 100), centre=(30, 57), radius=10)
    pair, part = disc | second, disc & (np.arange(100)[None] < 30)
    masks, scores = np.stack([pair, disc, part]), np.array([0.9, 0.8, 0.85])
    assert solidity(pair) < 0.9 < 0.95 < solidity(disc) <= 1.0
    assert preferred_candidate(masks, scores, None) == 0  # SAM's choice
    assert preferred_candidate(masks, scores, 0.95) == 2  # the best score of the solid ones
    assert preferred_candidate(masks[:2], scores[:2], 0.95) == 1
    assert preferred_candidate(masks[:1], scores[:1], 0.95) == 0
    # none solid enough: the most solid
    assert preferred_candidate(np.stack([pair, pair | (np.arange(60)[:, None] < 3)]),
                               np.array([0.5, 0.9]), 0.999) == 0  # fmt: skip
    with pytest.raises(ValueError, match="min_solidity: expected a fraction"):
        OutlineSettings(min_solidity=0.0)


def test_best_candidate_is_sams_without_an_outline(tiny):
    from napari_sam.stacks import StackView

    image = make_nuclei_2d((128, 128), seed=7)[0]
    raw = make_predictor(tiny, StackView(image, "YX"), outline=None)
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2] = masks[1, 0, :] = masks[1, :, 0] = True  # 1 is not solid
    assert raw.best_candidate(masks, np.array([0.1, 0.9, 0.5])) == 1
    raw.outline = OutlineSettings(min_solidity=0.95)
    assert raw.best_candidate(masks, np.array([0.1, 0.9, 0.5])) == 0


def test_records_say_how_masks_were_drawn(tiny, capsys):
    import json
    from types import SimpleNamespace

    from napari_sam.batch.record import check_replay
    from napari_sam.predict.outline import describe_outline
    from napari_sam.stacks import StackView

    sp = make_predictor(tiny, StackView(make_nuclei_2d((64, 64), seed=3)[0], "YX"))
    drawn = describe_outline(sp.outline)
    assert json.loads(json.dumps(drawn)) == drawn and describe_outline(None) is None
    settings = SimpleNamespace(model="sam_tiny_nuclei", allow_other_model=False)
    check_replay({"outline": drawn}, sp, settings, "p.json")
    assert "outline" not in capsys.readouterr().err
    check_replay({}, sp, settings, "p.json")  # a record of SAM's masks (before 2026-12-07)
    err = capsys.readouterr().err
    assert "p.json: its masks were drawn as SAM decoded them" in err and "may differ" in err


def test_segment_draws_as_the_model_records_unless_sam_masks(tmp_path):
    import tifffile

    from napari_sam.batch.api import segment
    from napari_sam.io.provenance import read_made_by, sidecar_path
    from napari_sam.masks import object_centre

    image, labels = make_nuclei_2d((128, 128), seed=11, edge_level=0.5)
    tifffile.imwrite(tmp_path / "img.tif", image)
    rows = [f"{i},{y:.1f},{x:.1f}" for i in range(1, int(labels.max()) + 1)
            for x, y in [object_centre(labels == i)]]  # fmt: skip
    (tmp_path / "p.csv").write_text("object,axis-0,axis-1\n" + "\n".join(rows) + "\n")
    got = {}
    for name, extra in (("model", {}), ("sam", {"sam_masks": True})):
        out = tmp_path / f"{name}_labels.tif"
        segment(tmp_path / "img.tif", out, tmp_path / "p.csv", model="sam_tiny_nuclei", **extra)
        got[name] = tifffile.imread(out)
        drawn = read_made_by(sidecar_path(out))["outline"]
        assert (drawn is None) == (name == "sam")
    assert not np.array_equal(got["model"], got["sam"])
    assert got["model"].max() == got["sam"].max() == labels.max()


def test_a_click_is_confined_to_the_instance_under_it():
    from napari_sam.predict.outline import confine_masks

    image_a, disc = _nucleus(shape=(60, 100), centre=(30, 35), radius=10)
    image_b, second = _nucleus(shape=(60, 100), centre=(30, 56), radius=10)
    image = np.maximum(image_a, image_b)
    settings = OutlineSettings(inner=1, outer=1, min_solidity=0.98, instances=True)
    objects = disc.astype(np.uint32) + 2 * (second & ~disc)
    pair = disc | second
    far = np.zeros_like(disc)
    far[:5, 90:] = True  # does not touch the instance: left as it is
    out = confine_masks(image, np.stack([pair, far]), objects, [1], settings)
    assert iou(out[0], disc) > 0.9
    assert not (out[0] & ~ndimage.binary_dilation(disc, iterations=2)).any()  # cut, redrawn
    np.testing.assert_array_equal(out[1], far)
    # a nucleus the decoder cut in two pieces (neither convex): only background is cut
    halves = np.where(disc & (np.arange(100)[None] < 35), 1, np.where(disc, 3, 0))
    halves[24:36, 30:36] = 3  # a notch: piece 1 is not convex
    haze = ndimage.binary_dilation(disc, iterations=4)
    out = confine_masks(image_a, haze[None], halves.astype(np.uint32), [1], settings)[0]
    assert iou(out, disc) > 0.9 and out[:, 35:].any()  # kept piece 3, lost the haze
    with pytest.raises(ValueError, match="objects: expected shape"):
        confine_masks(image, pair[None], objects[:10], [1], settings)
    with pytest.raises(ValueError, match="instances: expected true or false"):
        OutlineSettings(instances="yes")


def test_the_guide_is_asked_once_a_window_and_only_for_clicks_on_an_object(tiny):
    from napari_sam.stacks import StackView

    image, _ = make_nuclei_2d((96, 96), seed=5, edge_level=0.5)
    calls = []
    objects = np.zeros((96, 96), np.uint32)
    objects[20:40, 20:40], objects[60:80, 60:80] = 1, 2

    def guide(embedding, shape):
        calls.append(tuple(shape))
        return objects[: shape[0], : shape[1]]

    sp = make_predictor(tiny, StackView(image, "YX"), guide=guide)
    assert sp.guide is guide and sp.outline.instances
    assert make_predictor(tiny, StackView(image, "YX"), outline=None, guide=guide).guide is None
    decoded = (np.zeros((1,)), (96, 96))
    window = sp.window(0)
    labels, ids = sp.clicked_objects((), window, decoded, np.array([[30.0, 30.0]]), (96, 96))
    np.testing.assert_array_equal(labels, objects) and np.testing.assert_array_equal(ids, [1])
    _, both = sp.clicked_objects((), window, decoded, np.array([[30, 30], [70, 70.0]]), (96, 96))
    np.testing.assert_array_equal(both, [1, 2])
    assert sp.clicked_objects((), window, decoded, np.array([[30, 30], [5, 5.0]]),
                                (96, 96)) is None  # a point on no object: not confined  # fmt: skip
    assert calls == [(96, 96)]  # kept for the window
    sp.invalidate()
    sp.clicked_objects((), window, decoded, np.array([[30.0, 30.0]]), (96, 96))
    assert calls == [(96, 96)] * 2
    masks = np.zeros((3, 96, 96), bool)
    masks[:, 15:45, 15:70] = True  # spills from object 1 to the right
    got = sp.redraw((), masks, window, points=np.array([[30.0, 30.0]]), decoded=decoded)
    assert not got[:, :, 45:].any()
    box = sp.redraw((), masks, window, box=np.array([15, 15, 69, 44]),
                    points=np.array([[30.0, 30.0]]), decoded=decoded)  # fmt: skip
    assert box[:, :, 45:].any()  # a box is not confined


@pytest.mark.parametrize("tiled", [False, True])
def test_predictors_confine_clicks_with_the_models_decoder(tiny, tiled):
    from napari_sam.predict.outline import confine_masks
    from napari_sam.segment.factory import make_guide
    from napari_sam.stacks import StackView

    image, labels = make_nuclei_2d((300, 280), seed=4243, edge_level=0.5, density=6e-4)
    view = StackView(image, "YX")
    tiling = plan_tiling(image.shape, (256, 256), tile=128) if tiled else None
    decoder, found = make_guide(tiny), []

    def guide(embedding, shape):
        found.append(decoder(embedding, shape))
        return found[-1]

    sp = make_predictor(tiny, view, tiling, guide=guide)
    raw = make_predictor(tiny, view, tiling, outline=None)
    confined = 0
    for i in range(1, int(labels.max()) + 1, 3):
        ys, xs = np.nonzero(labels == i)
        if not len(ys):
            continue
        click = np.array([[xs.mean(), ys.mean()]], np.float32)
        sp.forget_guides()  # found[-1]: this click's window
        got, _, _, window = sp.predict_window((), points=click, labels=np.array([1]))
        base, _, _, same = raw.predict_window((), points=click, labels=np.array([1]))
        assert window == same
        y0, y1, x0, x1 = window
        want = redraw_masks(raw.outline_image((), window), base, sp.outline)
        objects = found[-1][: y1 - y0, : x1 - x0]
        under = objects[int(round(click[0, 1])) - y0, int(round(click[0, 0])) - x0]
        if under:
            want = confine_masks(raw.outline_image((), window), want, objects, [under], sp.outline)
            confined += not np.array_equal(want, redraw_masks(raw.outline_image((), window),
                                                              base, sp.outline))  # fmt: skip
        np.testing.assert_array_equal(got, want)
    assert found and confined  # the decoder was asked, and changed some click's masks
    assert make_guide(SimpleModel()) is None


class SimpleModel:
    instance_decoder = None


def test_a_level_range_puts_the_outline_on_the_strongest_edge_nearby():
    # a nucleus with a bright core: the interior's median is the core's, so the fixed half
    # maximum lies inside the nucleus's own edge; the strongest edge within +- 0.2 is its edge
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    disc = r <= 12
    image = (20 + 80 * ndimage.gaussian_filter(disc.astype(np.float32), 1.5)
             + 24 * ndimage.gaussian_filter((r <= 8).astype(np.float32), 1.5))  # fmt: skip
    fixed = redraw_outline(image, disc, OutlineSettings(inner=2, outer=2))
    edge = redraw_outline(image, disc, OutlineSettings(inner=2, outer=2, level_range=0.2))
    assert iou(fixed, disc) < 0.92 and iou(edge, disc) > 0.95
    # the chosen outline is one of the fixed levels' redraws
    assert any(np.array_equal(edge, redraw_outline(image, disc, OutlineSettings(
        level=lv, inner=2, outer=2))) for lv in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7))
    # a box's masks stay at the fixed level
    box = np.array([20, 20, 60, 60], np.float32)
    ranged = OutlineSettings(inner=2, outer=2, level_range=0.2)
    np.testing.assert_array_equal(redraw_masks(image, disc[None], ranged, box)[0], fixed)
    np.testing.assert_array_equal(redraw_masks(image, disc[None], ranged)[0], edge)
    # on a plain blurred disc the half maximum is the strongest edge: nothing changes
    plain, disc = _nucleus()
    np.testing.assert_array_equal(
        redraw_outline(plain, disc, OutlineSettings(inner=2, outer=2, level_range=0.2)),
        redraw_outline(plain, disc, OutlineSettings(inner=2, outer=2)))
    with pytest.raises(ValueError, match="level_range: expected"):
        OutlineSettings(level=0.5, level_range=0.5)



@pytest.mark.parametrize("level_range", [0.0, 0.1])
def test_a_nucleus_with_a_dark_centre_keeps_no_hole(level_range):
    image, disc = _nucleus(radius=14)
    yy, xx = np.mgrid[:80, :80]
    image[(yy - 40) ** 2 + (xx - 40) ** 2 <= 9] = 20.0  # a dark nucleolus, background-dark
    settings = OutlineSettings(inner=20, outer=1, level_range=level_range)  # the band reaches it
    out = redraw_outline(image, disc, settings)
    assert out[40, 40] and iou(out, disc) > 0.9
    np.testing.assert_array_equal(out, ndimage.binary_fill_holes(out))
    # a mask at the edge of the image: the background outside it is no hole
    edge = redraw_outline(image[:, 30:], disc[:, 30:], settings)
    assert not edge[:, 0].all() and edge[40, 10]
