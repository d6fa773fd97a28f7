"""Tiles at native resolution: geometry, the store's records per tile, prompts anywhere,
automatic segmentation without seams (issue [scale])."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.masks import iou, object_centre
from napari_sam.stacks.tiling import MIN_TILE, TileView, Tiling, check_tiling, plan_tiling
from napari_sam.stacks.view import StackView
from napari_sam.train.evaluation import instance_f1
from napari_sam.train.synthetic import HALF_MAXIMUM_EDGE, make_nuclei_2d

SEED = 31337  # held out: training draws seeds >= 1_000_000


# -- geometry (no TensorFlow) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "length,tile,halo", [(1000, 256, 32), (257, 256, 32), (2048, 256, 0), (5000, 512, 100),
                         (300, 128, 63), (100, 256, 32)],
)  # fmt: skip
def test_inner_regions_partition_the_image_and_keep_the_halo(length, tile, halo):
    t = Tiling((length, 50), (tile, 64), (halo, 8))
    covered = np.zeros(length, int)
    for start, lo, hi in t.rows:
        covered[lo:hi] += 1
        assert start + tile >= hi and start <= lo  # the inner region lies in its window
        if start > 0:
            assert lo - start >= halo  # halo pixels to an edge inside the image
        if start + tile < length:
            assert start + tile - hi >= halo
        assert length < tile or start + tile <= length  # windows stay inside the image
    assert (covered == 1).all()
    ys = np.arange(length)
    assert [t.tile_at(y, 0) for y in ys[::7]] == list(t.tiles_at(ys[::7], np.zeros(len(ys[::7]))))


def test_best_tile_prefers_the_window_farthest_from_its_edges():
    t = Tiling((1000, 1000), 256, 32)
    box = (400, 400, 420, 420)
    best, margin = t.best_tile(box)
    y0, y1, x0, x1 = t.window(best)
    assert y0 <= 400 and y1 >= 420 and x0 <= 400 and x1 >= 420 and margin > 0
    assert margin == max(t.margin(k, box) for k in range(len(t)))
    assert t.best_tile((0, 0, 999, 999))[1] < 0  # held by no window


@pytest.mark.parametrize(
    "kwargs,pattern",
    [(dict(tile=MIN_TILE - 1), "^tile: expected at least 64"),
     (dict(tile=256, halo=128), "^halo: 128 px is half the tile"),
     (dict(tile=256, halo=-1), "^halo: expected 0 or more"),
     (dict(diameter=0), "^diameter: expected a positive"),
     (dict(diameter=-3), "^diameter: expected a positive"),
     (dict(diameter=float("nan")), "^diameter: expected a positive"),
     (dict(tile=2.5), "^tile: expected an integer")],
)  # fmt: skip
def test_bad_tilings_name_the_argument(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_tiling(**kwargs)


def test_plan_tiling_defaults():
    assert plan_tiling((384, 384), (256, 256)) is None  # at most 1.5 inputs: whole image
    t = plan_tiling((385, 100), (256, 256))
    assert t.tile == (256, 256) and t.halo == (32, 32) and len(t) == 2
    assert plan_tiling((4096, 4096), (256, 256), no_tile=True) is None
    d = plan_tiling((300, 300), (256, 256), diameter=56, model_diameter=28)
    assert d.tile == (512, 512) and len(d) == 1  # one padded window: objects halved
    assert plan_tiling((300, 300), (256, 256), tile=128).tile == (128, 128)
    with pytest.raises(ValueError, match="^diameter: this model records no"):
        plan_tiling((300, 300), (1024, 1024), diameter=30)
    with pytest.raises(ValueError, match="^tile: give either"):
        plan_tiling((300, 300), (256, 256), tile=128, diameter=30, model_diameter=28)
    with pytest.raises(ValueError, match="^no_tile: cannot be combined with tile"):
        plan_tiling((300, 300), (256, 256), tile=128, no_tile=True)
    with pytest.raises(ValueError, match="^diameter: objects of 5 px"):
        plan_tiling((300, 300), (256, 256), diameter=5, model_diameter=28)


def test_the_store_keys_tiles_on_their_padding_value():
    base = StackView(np.zeros((2, 300, 200), np.uint16), "ZYX")
    tiling = Tiling((300, 200), 128, 16)
    a, b = TileView(base, tiling, pad_value=[7]), TileView(base, tiling, pad_value=[8])
    assert a.tiling_signature() != b.tiling_signature()
    assert a.tiling_signature() == TileView(base, tiling, pad_value=[7.0]).tiling_signature()


def test_tile_view_reads_windows_lazily_and_pads_past_the_image():
    data = np.arange(2 * 300 * 200, dtype=np.uint16).reshape(2, 300, 200)
    reads = []

    class Recording:
        shape, dtype, ndim = data.shape, data.dtype, 3

        def __getitem__(self, key):
            reads.append(key)
            return data[key]

    base = StackView(Recording(), "ZYX")
    view = TileView(base, Tiling((300, 200), 128, 16), pad_value=[7])
    assert len(view) == 2 * len(view.tiling) and view.slice_shape == (128, 128)
    for i in range(len(view)):
        z, t = divmod(i, len(view.tiling))
        y0, y1, x0, x1 = view.tiling.window(t)
        assert np.array_equal(view.get_slice(i)[..., 0], data[z, y0:y1, x0:x1])
    assert all(k[1] != slice(None) and k[2] != slice(None) for k in reads)  # never a whole slice
    small = TileView(StackView(data[0, :100, :90], "YX"), Tiling((100, 90), 128, 16), [7])
    tile = small.get_slice(0)[..., 0]
    assert tile.shape == (128, 128) and (tile[100:] == 7).all() and (tile[:, 90:] == 7).all()
    assert np.array_equal(tile[:100, :90], data[0, :100, :90])


# -- with the shipped model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from napari_sam import create_model

    return create_model("sam_tiny_nuclei", pretrained=True)


@pytest.fixture(scope="module")
def nuclei():
    # labels at half each nucleus's intensity, where people draw (and sam_tiny_nuclei does)
    return make_nuclei_2d((768, 768), seed=SEED, edge_level=HALF_MAXIMUM_EDGE)


@pytest.fixture(scope="module")
def tiled(tiny, nuclei):
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    image, _ = nuclei
    return TiledPredictor(tiny, image, plan_tiling(image.shape, (256, 256)), axes="YX")


def test_one_window_over_the_whole_image_gives_the_plain_predictor_masks(tiny):
    from napari_sam.stacks.stack_predictor import StackPredictor
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    image, labels = make_nuclei_2d((256, 256), seed=SEED + 1)
    plain = StackPredictor(tiny, image, axes="YX")
    tp = TiledPredictor(tiny, image, Tiling((256, 256), 256, 32), axes="YX")
    for i in (1, 2, 3):
        x, y = object_centre(labels == i)
        a = plain.predict(0, points=[[x, y]], labels=[1])
        b = tp.predict(0, points=[[x, y]], labels=[1])
        assert np.array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], atol=1e-5)
    box = np.array([[10, 20, 90, 120]])
    assert np.array_equal(plain.predict(0, boxes=box)[0], tp.predict(0, boxes=box)[0])


def test_a_tile_mask_is_the_mask_of_its_crop(tiny, tiled, nuclei):
    """Decoding on a tile = SAM on the normalised crop, shifted back into the image."""
    from napari_sam import SAMPredictor

    image, labels = nuclei
    t = 4  # the middle window of a 3 x 3 grid
    y0, y1, x0, x1 = tiled.tiling.window(t)
    crop = tiled.store.prepare(image[y0:y1, x0:x1, None])
    ref = SAMPredictor(tiny)
    ref.set_image(crop)
    iy0, iy1, ix0, ix1 = tiled.tiling.inner(t)
    point = np.array([[(ix0 + ix1) / 2, (iy0 + iy1) / 2]])
    masks, scores, _ = tiled.predict(0, points=point, labels=[1])
    want, want_scores, _ = ref(points=point - [x0, y0], labels=np.array([1]))
    best = int(np.argmax(scores))
    if not tiled._cut(masks[best, y0:y1, x0:x1], (y0, y1, x0, x1)):
        assert np.array_equal(masks[:, y0:y1, x0:x1], want)
        assert not masks[:, :y0].any() and not masks[:, y1:].any()
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_clicks_anywhere_at_native_resolution(tiny, tiled, nuclei):
    """Clicks on nuclei crossing tile borders are as good as on interior ones; squeezing the
    image into the model input is far worse."""
    from napari_sam.stacks.stack_predictor import StackPredictor

    image, labels = nuclei
    plain = StackPredictor(tiny, image, axes="YX")
    tiling = tiled.tiling
    scores = {"border": [], "interior": [], "untiled": []}
    for i in range(1, int(labels.max()) + 1):
        obj = labels == i
        x, y = object_centre(obj)
        masks, s, _ = tiled.predict(0, points=[[x, y]], labels=[1])
        ys, xs = np.nonzero(obj)
        crosses = len(np.unique(tiling.tiles_at(ys, xs))) > 1
        scores["border" if crosses else "interior"].append(iou(masks[np.argmax(s)], obj))
        if i % 4 == 0:
            masks, s, _ = plain.predict(0, points=[[x, y]], labels=[1])
            scores["untiled"].append(iou(masks[np.argmax(s)], obj))
    n_border = len(scores["border"])
    assert n_border >= 15, n_border
    tiled_all = scores["border"] + scores["interior"]
    assert np.median(tiled_all) >= 0.85, scores
    assert np.median(tiled_all) > np.median(scores["untiled"]) + 0.3
    assert abs(np.mean(scores["border"]) - np.mean(scores["interior"])) <= 0.05


def test_prompts_spread_over_tiles_and_objects_past_the_halo_are_never_cut(tiny, nuclei):
    """With no halo, a nucleus on a tile border is cut in every tile: it is decoded on a
    window centred on it (embedded on demand) and comes back whole. Prompts spread over
    several tiles give one mask, never an error."""
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    image, labels = nuclei
    tp = TiledPredictor(tiny, image, Tiling(image.shape, 256, 0), axes="YX")
    border, interior = [], []
    for i in range(1, int(labels.max()) + 1):
        obj = labels == i
        ys, xs = np.nonzero(obj)
        crosses = len(np.unique(tp.tiling.tiles_at(ys, xs))) > 1
        x, y = object_centre(obj)
        m, s, _ = tp.predict(0, points=[[x, y]], labels=[1])
        (border if crosses else interior).append(iou(m[np.argmax(s)], obj))
    assert len(border) >= 15 and tp.on_demand >= 5, (len(border), tp.on_demand)
    assert abs(np.mean(border) - np.mean(interior)) <= 0.05, (border, interior)
    points = np.array([[200, 384], [560, 384]])  # in different inner regions
    assert len({tp.tiling.tile_at(y, x) for x, y in points}) == 2
    masks, scores, _ = tp.predict(0, points=points, labels=[1, 1])
    assert masks.shape == (3, 768, 768) and scores.shape == (3,)
    masks, _, _ = tp.predict(0, boxes=np.array([[100, 300, 700, 400]]), multimask_output=False)
    assert masks.shape == (1, 768, 768)
    with pytest.raises(ValueError, match="masks: mask prompts are not supported"):
        tp.predict(0, points=points, labels=[1, 1], masks=np.zeros((1, 128, 128)))
    with pytest.raises(ValueError, match="outside the image"):
        tp.predict_window(0, points=[[900, 10]], labels=[1])


def split_at_borders(pred, truth, tiling) -> int:
    """True objects crossing a tile border whose pixels are split between two labels that
    each lie mostly inside the object (fragments, not a merged neighbour)."""
    n = 0
    for i in range(1, int(truth.max()) + 1):
        obj = truth == i
        ys, xs = np.nonzero(obj)
        if len(np.unique(tiling.tiles_at(ys, xs))) < 2:
            continue
        ids, counts = np.unique(pred[obj], return_counts=True)
        fragments = [
            a for a, c in zip(ids, counts, strict=True)
            if a and c >= 0.2 * obj.sum() and c >= 0.8 * (pred == a).sum()
        ]  # fmt: skip
        n += len(fragments) > 1
    return n


def test_automatic_segmentation_over_tiles_without_seams(tiny, tiled, nuclei):
    from napari_sam.segment.automatic import AutomaticMaskGenerator
    from napari_sam.segment.driver import segment_stack
    from napari_sam.stacks.stack_predictor import StackPredictor

    image, truth = nuclei
    thresholds = dict(pred_iou_thresh=0.7, stability_score_thresh=0.9, points_per_side=16)
    labels = segment_stack(tiled, AutomaticMaskGenerator(tiled.predictor, **thresholds))
    scores = instance_f1(labels, truth)
    # grid prompts (not this model's default route, its decoder is): 0.841 with the weights of
    # 2026-12-06 evening, 0.876 with the previous ones (docs/tiny-model.md)
    assert scores.f1 >= 0.83, scores
    assert split_at_borders(labels, truth, tiled.tiling) == 0
    plain = StackPredictor(tiny, image, axes="YX")
    squeezed = segment_stack(plain, AutomaticMaskGenerator(plain.predictor, **thresholds))
    assert scores.f1 >= instance_f1(squeezed, truth).f1 + 0.3
    with pytest.raises(ValueError, match="^crop_n_layers"):
        segment_stack(tiled, AutomaticMaskGenerator(tiled.predictor, crop_n_layers=1))


def test_store_keeps_a_record_per_tile_keyed_by_the_tiling(tiny, tmp_path):
    from napari_sam.stacks.normalize import Normalization
    from napari_sam.stacks.store import StoreMismatchError
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    norm = Normalization.fixed(0, 4095)  # the same mapping after the edit below

    image = np.stack([make_nuclei_2d((320, 300), seed=SEED + k)[0] for k in (2, 3)])
    tiling = Tiling((320, 300), 256, 32)
    store = tmp_path / "tiles.zarr"
    def open_store(tiling):
        return TiledPredictor(tiny, image, tiling, normalization=norm, store=store, axes="ZYX")

    first = open_store(tiling)
    assert not first.ready_tiles(1).any()
    res = first.precompute()
    assert first.ready_tiles(0).all() and first.ready_tiles(1).all()
    assert (res.computed, res.reused, res.total) == (2 * len(tiling), 0, 2 * len(tiling))
    assert len(list((store / "records").glob("*.json"))) == 2 * len(tiling)
    again = open_store(tiling).precompute()
    assert (again.computed, again.reused) == (0, 2 * len(tiling))
    with pytest.raises(StoreMismatchError, match="tiling: stored 'tiles:image=320x300:tile=256"):
        open_store(Tiling((320, 300), 192, 32))
    image[1, :50] += 1  # one slice changed: only its tiles that read the change are redone
    third = open_store(tiling).precompute()
    changed = sum(tiling.window(t)[0] < 50 for t in range(len(tiling)))
    assert (third.computed, third.reused) == (changed, 2 * len(tiling) - changed)


def test_diameter_brings_large_nuclei_back_to_the_trained_size(tiny):
    """Nuclei twice the trained size, tiles sized by the diameter: clicks work again."""
    from napari_sam.stacks.stack_predictor import StackPredictor
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    image, labels = make_nuclei_2d((512, 512), seed=SEED + 5, radius_range=(20.0, 36.0),
                                   blur_sigma=2.0, density=7.5e-5)  # fmt: skip
    tiling = plan_tiling(image.shape, (256, 256), diameter=56, model_diameter=28)
    assert tiling.tile == (512, 512)
    tp = TiledPredictor(tiny, image, tiling, axes="YX")
    plain = StackPredictor(tiny, image[:256, :256], axes="YX")  # native: nuclei too big
    got, native = [], []
    for i in range(1, int(labels.max()) + 1):
        obj = labels == i
        x, y = object_centre(obj)
        m, s, _ = tp.predict(0, points=[[x, y]], labels=[1])
        got.append(iou(m[np.argmax(s)], obj))
        if x < 230 and y < 230:
            m, s, _ = plain.predict(0, points=[[x, y]], labels=[1])
            native.append(iou(m[np.argmax(s)], obj[:256, :256]))
    assert len(got) >= 10 and np.median(got) >= 0.8, got
    assert not native or np.median(got) >= np.median(native), (got, native)


def test_diameter_estimate_follows_the_object_size():
    from napari_sam.stacks.diameter import estimate_diameter

    small = make_nuclei_2d((512, 512), seed=SEED + 6)[0]
    large = make_nuclei_2d((512, 512), seed=SEED + 7, radius_range=(20.0, 36.0),
                           density=7.5e-5)[0]  # fmt: skip
    d_small = estimate_diameter(StackView(small, "YX"))
    d_large = estimate_diameter(StackView(large, "YX"))
    assert 18 <= d_small <= 32 and 40 <= d_large <= 72, (d_small, d_large)
    assert estimate_diameter(StackView(np.zeros((64, 64), np.uint16), "YX")) is None


def test_diameter_estimate_of_a_z_stack_counts_each_object_at_its_widest():
    """A slice cuts most nuclei of a z-stack away from their widest section: along Z the
    estimate follows each nucleus over the slices around it; along T (frames) it does not."""
    from napari_sam.stacks.diameter import estimate_diameter
    from napari_sam.train.synthetic import make_nuclei_3d

    image, labels = make_nuclei_3d((16, 256, 256), seed=SEED + 8)
    widest = [max(np.sum(labels[z] == i) for z in range(16)) for i in range(1, labels.max() + 1)]
    truth = float(np.median(2 * np.sqrt(np.array(widest) / np.pi)))
    d_z = estimate_diameter(StackView(image, "ZYX"))
    d_t = estimate_diameter(StackView(image, "TYX"))  # the middle slice on its own
    assert abs(d_z - truth) < 0.2 * truth and d_t < d_z, (d_z, d_t, truth)
    assert estimate_diameter(StackView(image, "ZYX"), index=0) is not None  # at the edge


def test_default_settings_resample_when_objects_are_far_from_the_model_size(capsys):
    """With no --diameter, --tile, --halo or --no-tile the CLI resamples to the model's preferred
    size when the objects, as the model would see them, are far from it, and says so in one
    line; nothing when they match, nothing is found, or the user chose."""
    from napari_sam.batch.settings import LabelSettings
    from napari_sam.batch.tiles import resampled_diameter, tiling_for
    from napari_sam.stacks.diameter import native_scale
    from napari_sam.weights.registry import model_config

    small = make_nuclei_2d((512, 512), seed=SEED + 6, radius_range=(5.0, 8.0), density=8e-4)[0]
    fitting = make_nuclei_2d((512, 512), seed=SEED + 6)[0]
    d = resampled_diameter(StackView(small, "YX"), "sam_tiny_nuclei", 28.0, (256, 256))
    assert d is not None and 8 < d < 20, d
    said = capsys.readouterr().err.strip()
    assert "works best at 28 px: resampled to it (--diameter native" in said, said
    assert len(said.splitlines()) == 1
    assert resampled_diameter(StackView(fitting, "YX"), "sam_tiny_nuclei", 28.0, (256, 256)) is None
    blank = StackView(np.zeros((64, 64), np.uint16), "YX")
    assert resampled_diameter(blank, "m", 28.0, (256, 256)) is None
    assert capsys.readouterr().err == ""
    settings = LabelSettings(input="in.tif", out="out.tif", model="sam_tiny_nuclei")
    config = model_config("sam_tiny_nuclei")
    tiling = tiling_for(settings, StackView(small, "YX"), config)
    assert tiling.tile == (round(256 * d / 28.0),) * 2, tiling
    assert "resampled" in capsys.readouterr().err
    assert tiling_for(settings, StackView(fitting, "YX"), config).tile == (256, 256)
    for given in ({"diameter": 12.0}, {"no_tile": True}, {"tile": 256}, {"halo": 16},
                  {"diameter": "native"}):  # fmt: skip
        tiling = tiling_for(LabelSettings(**vars(settings) | given), StackView(small, "YX"),
                            config)  # fmt: skip
        assert "resampled" not in capsys.readouterr().err, given
        if given == {"diameter": "native"}:
            assert tiling.tile == (256, 256)  # the default plan: native resolution
    # objects too small to plan windows for stay at native resolution, and that is said
    tiny = make_nuclei_2d((512, 512), seed=SEED + 9, radius_range=(2.5, 3.5), density=3e-3)[0]
    assert resampled_diameter(StackView(tiny, "YX"), "sam_tiny_nuclei", 28.0, (256, 256)) is None
    said = capsys.readouterr().err
    assert "under the 64 px minimum: not resampled" in said and len(said.splitlines()) == 1, said
    assert tiling_for(settings, StackView(tiny, "YX"), config).tile == (256, 256)
    # the size the model sees: a slice that is not tiled is resized whole to the input
    assert native_scale((512, 512), (256, 256)) == 1.0
    assert native_scale((300, 200), (256, 256)) == pytest.approx(256 / 300)
    assert native_scale((128, 100), (256, 256)) == 2.0


def test_parts_of_one_object_from_two_tiles_are_merged_but_neighbours_are_not():
    from napari_sam.segment.seams import merge_across_tiles
    from napari_sam.segment.tiled import CroppedMask, paint_masks

    yy, xx = np.mgrid[:40, :60]
    whole = ((yy - 20) / 12.0) ** 2 + ((xx - 30) / 20.0) ** 2 <= 1

    def cropped(mask, score, origin):
        ys, xs = np.nonzero(mask)
        part = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        return CroppedMask(part, int(ys.min()), int(xs.min()), score, 1.0, (0, 0), origin)

    left, right = whole & (xx < 30), whole & (xx >= 30)
    candidates = [cropped(left, 0.9, 0), cropped(right, 0.8, 1), cropped(whole, 0.7, 1)]
    for origins, pool, merged in (((0, 1), candidates, True),    # two tiles, whole proposed
                                  ((1, 1), candidates, False),   # one tile: two objects
                                  ((0, 1), candidates[:2], False)):  # nobody saw it whole
        parts = [cropped(left, 0.9, origins[0]), cropped(right, 0.8, origins[1])]
        painted = []
        labels = paint_masks(parts, whole.shape, painted=painted)
        assert labels.max() == 2
        out = merge_across_tiles(labels, painted, pool)
        assert out.max() == (1 if merged else 2) and (out > 0).sum() == whole.sum()


@pytest.mark.parametrize("iou", [0.84, 0.86])
def test_a_candidate_merges_parts_only_at_the_union_iou_threshold(iou):
    from napari_sam.segment.seams import MIN_UNION_IOU, merge_across_tiles
    from napari_sam.segment.tiled import CroppedMask, paint_masks

    yy, xx = np.mgrid[:40, :60]
    whole = ((yy - 20) / 12.0) ** 2 + ((xx - 30) / 20.0) ** 2 <= 1
    left, right = whole & (xx < 30), whole & (xx >= 30)
    # the candidate: the whole object less its last rows, so that its IoU with it is ``iou``
    keep = whole.copy()
    drop = int(round(whole.sum() * (1 - iou)))
    ys, xs = np.nonzero(whole)
    keep[ys[-drop:], xs[-drop:]] = False
    whole_iou = keep.sum() / whole.sum()
    assert abs(whole_iou - iou) < 0.005

    def cropped(mask, origin):
        ys, xs = np.nonzero(mask)
        part = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        return CroppedMask(part, int(ys.min()), int(xs.min()), 0.9, 1.0, (0, 0), origin)

    parts = [cropped(left, 0), cropped(right, 1)]
    painted = []
    labels = paint_masks(parts, whole.shape, painted=painted)
    # far away candidates of every size are looked at and rejected too
    far = np.zeros((40, 60), bool)
    far[0:3, 0:3] = True
    out = merge_across_tiles(labels, painted, [cropped(far, 1), cropped(keep, 1)])
    assert out.max() == (1 if whole_iou >= MIN_UNION_IOU else 2)
