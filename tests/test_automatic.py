"""Automatic mask generation: parity with Meta's SamAutomaticMaskGenerator, labels, 3-D linking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam import create_model
from napari_sam.masks import bounding_box, mask_to_box
from napari_sam.segment.amg_utils import box_nms, remove_small_regions
from napari_sam.segment.automatic import AutomaticMaskGenerator, to_label_image
from napari_sam.segment.linking import drop_short_objects, link_slices, match_labels
from napari_sam.weights import model_config

from ref_models import build_reference, follow_regions, save_like_official
from reference import import_segment_anything
from small_configs import NARROW_ENCODER_128_PADDED_WINDOWS as SMALL

SETTINGS = dict(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                box_nms_thresh=0.7, min_mask_region_area=0)  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cfg = model_config("sam_vit_b", **SMALL)
    sam = build_reference(cfg, seed=5)
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    save_like_official(sam, path)
    return sam, create_model("sam_vit_b", pretrained=path, **SMALL)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Perturbed weights, but masks that follow image regions: no position embeddings in the
    encoder and no sub-pixel pattern in the decoder's upscaling (each transposed-convolution
    kernel made the same at every offset), so masks stay inside crops and NMS has work."""
    sam = follow_regions(build_reference(model_config("sam_vit_b", **SMALL), seed=6))
    path = tmp_path_factory.mktemp("ckpt") / "local.pth"
    save_like_official(sam, path)
    return sam, create_model("sam_vit_b", pretrained=path, **SMALL)


def box_iou(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)  # XYWH
    if (a == b).all():
        return 1.0  # also for the empty boxes of empty masks
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[:2] + a[2:], b[:2] + b[2:])
    inter = max(x1 - x0, 0) * max(y1 - y0, 0)
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


@pytest.mark.parametrize(
    ("crop_n_layers", "nms", "iou_thresh", "stability_thresh"),
    [(0, 0.7, 0.0, 0.0), (0, 1.0, 0.01, 0.05), (1, 1.0, 0.01, 0.05)],
)
def test_parity_with_meta(small, crop_n_layers, nms, iou_thresh, stability_thresh):
    """Random weights give masks spread over the whole image (all boxes alike), so NMS at
    0.7 keeps one; with NMS off (IoU > 1 never happens) every surviving mask is compared, and
    the score filters are tested with thresholds that drop some masks."""
    sam, model = small
    rng = np.random.default_rng(crop_n_layers)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    img[20:60, 30:80] //= 4  # some structure
    kw = dict(SETTINGS, crop_n_layers=crop_n_layers, box_nms_thresh=nms, crop_nms_thresh=nms,
              pred_iou_thresh=iou_thresh, stability_score_thresh=stability_thresh)  # fmt: skip
    ref = import_segment_anything().SamAutomaticMaskGenerator(sam, **kw)
    with torch.no_grad():
        want = ref.generate(img)
    got = AutomaticMaskGenerator(model, **kw).generate(img)
    n_prompts = 3 * 8 * 8
    assert len(want) == (1 if nms < 1 else len(want)) and 1 <= len(want) < n_prompts
    assert len(got) == len(want)
    free = list(range(len(want)))
    for g in got:
        # the best match among reference masks of (nearly) the same score and box
        cands = [k for k in free if abs(g["predicted_iou"] - want[k]["predicted_iou"]) < 1e-3
                 and box_iou(g["bbox"], want[k]["bbox"]) > 0.9]  # fmt: skip
        assert cands, g["predicted_iou"]
        k = max(cands, key=lambda k: (g["segmentation"] == want[k]["segmentation"]).mean())
        free.remove(k)
        w = want[k]
        agree = (g["segmentation"] == w["segmentation"]).mean()
        assert agree >= 0.999, agree
        assert abs(g["stability_score"] - w["stability_score"]) < 1e-2
        assert g["crop_box"] == list(w["crop_box"]) and g["bbox"] == list(w["bbox"])
        np.testing.assert_allclose(g["point_coords"], w["point_coords"])
        assert g["segmentation"].shape == img.shape[:2] and g["segmentation"].dtype == bool
        assert g["area"] == int(g["segmentation"].sum()) == w["area"] or agree < 1


def compare(got, want, shape):
    """Every mask of ``got`` matches one of ``want`` (score, box, pixels, record fields)."""
    assert len(got) == len(want)
    free = list(range(len(want)))
    for g in got:
        cands = [k for k in free if abs(g["predicted_iou"] - want[k]["predicted_iou"]) < 1e-3
                 and box_iou(g["bbox"], want[k]["bbox"]) > 0.9]  # fmt: skip
        assert cands, g
        k = max(cands, key=lambda k: (g["segmentation"] == want[k]["segmentation"]).mean())
        free.remove(k)
        w = want[k]
        assert (g["segmentation"] == w["segmentation"]).mean() >= 0.999
        assert np.isclose(g["stability_score"], w["stability_score"], atol=1e-2, equal_nan=True)
        assert g["crop_box"] == list(w["crop_box"])
        np.testing.assert_allclose(g["point_coords"], w["point_coords"])
        assert g["segmentation"].shape == shape and g["segmentation"].dtype == bool
        assert g["area"] == int(g["segmentation"].sum())


def test_parity_with_meta_local_masks_and_crops(local):
    sam, model = local
    img = np.zeros((120, 160, 3), np.uint8)
    img[10:40, 15:50] = 255
    img[60:110, 30:70] = 180
    img[30:90, 100:140] = 120
    img[95:115, 120:150] = 220
    kw = dict(SETTINGS, crop_n_layers=1)  # tiny logits: any stability threshold drops all
    ref = import_segment_anything().SamAutomaticMaskGenerator(sam, **kw)
    with torch.no_grad():
        want = ref.generate(img)
    got = AutomaticMaskGenerator(model, **kw).generate(img)
    crops = {tuple(w["crop_box"]) for w in want}
    boxes = {tuple(w["bbox"]) for w in want if w["area"]}
    assert len(crops) >= 3 and len(boxes) >= 5, "the case would not test crops and NMS"
    compare(got, want, img.shape[:2])


def test_nms_matches_reference_shim():
    from reference import nms

    rng = np.random.default_rng(0)
    xy = rng.integers(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 30, (60, 2))], 1).astype(np.float32)
    scores = rng.integers(0, 5, 60).astype(np.float32)  # many ties
    want = nms(torch.as_tensor(boxes), torch.as_tensor(scores), 0.5).numpy()
    np.testing.assert_array_equal(box_nms(boxes, scores, 0.5), want)


def test_mask_to_box_and_small_regions():
    m = np.zeros((2, 10, 12), bool)
    m[0, 2:5, 3:9] = True
    np.testing.assert_array_equal(mask_to_box(m), [[3, 2, 8, 4], [0, 0, 0, 0]])
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a 1-pixel hole
    mask[16:18, 16:18] = True  # a 4-pixel island
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed and filled[5, 5] and filled.sum() == mask.sum() + 1
    clean, changed = remove_small_regions(filled, 5, "islands")
    assert changed and not clean[16:18, 16:18].any() and clean.sum() == 100
    same, changed = remove_small_regions(clean, 5, "islands")
    assert not changed and (same == clean).all()
    # only small islands: the largest is kept
    tiny = np.zeros((10, 10), bool)
    tiny[0, 0] = tiny[5, 5:7] = True
    kept, _ = remove_small_regions(tiny, 5, "islands")
    assert kept.sum() == 2 and kept[5, 5:7].all()


def test_min_mask_region_area_cleans_masks(small):
    _, model = small
    img = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    kw = dict(SETTINGS, points_per_side=4, box_nms_thresh=1.0)
    raw = AutomaticMaskGenerator(model, **kw).generate(img)
    kw["min_mask_region_area"] = 30
    clean = AutomaticMaskGenerator(model, **kw).generate(img)
    assert len(raw) > 0 and 0 < len(clean) <= len(raw)
    dirty = [remove_small_regions(r["segmentation"], 30, "islands")[1] for r in raw]
    assert any(dirty), "nothing to clean: the test would prove nothing"
    for r in clean:
        m = r["segmentation"]
        for mode in ("holes", "islands"):
            assert not remove_small_regions(m, 30, mode)[1], "a small region is left"
        x, y, w, h = r["bbox"]
        np.testing.assert_array_equal(mask_to_box(m), [x, y, x + w, y + h])


def rec(mask, score=0.9):
    return {"segmentation": mask, "area": int(mask.sum()), "predicted_iou": score}


def test_to_label_image():
    a = np.zeros((10, 10), bool)
    a[:6, :6] = True
    b = np.zeros_like(a)
    b[2:4, 2:4] = True  # inside a
    c = np.zeros_like(a)
    c[8:, 8:] = True
    hidden = b.copy()  # same area as b, lower score: drawn first, then covered
    recs = [rec(c), rec(hidden, 0.1), rec(a), rec(b)]
    labels = to_label_image(recs, a.shape, order="largest_first")
    assert labels.dtype == np.uint32
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]  # consecutive; the hidden one is gone
    assert len(np.unique(labels[b])) == 1 and (labels[a & ~b] == labels[0, 0]).all()
    assert labels[0, 0] != labels[2, 2] and labels[9, 9] not in (0, labels[0, 0])
    assert (labels[~(a | b | c)] == 0).all()
    assert to_label_image([], (4, 5)).shape == (4, 5)


def test_to_label_image_best_first_drops_duplicates_and_fragments():
    a = np.zeros((10, 10), bool)
    a[:6, :6] = True  # 36 px, the best mask
    part = np.zeros_like(a)
    part[:3, :6] = True  # a fragment of a: nothing left free
    dup = np.zeros_like(a)
    dup[1:7, :6] = True  # a shifted by a row: 6 of 36 px free, below half
    spill = np.zeros_like(a)
    spill[4:8, 4:8] = True  # 16 px, 4 taken by a: 12 free, kept without them
    c = np.zeros_like(a)
    c[8:, :2] = True
    recs = [rec(c, 0.5), rec(part, 0.9), rec(a, 0.95), rec(dup, 0.85), rec(spill, 0.8)]
    labels = to_label_image(recs, a.shape)  # best_first is the default
    assert labels.dtype == np.uint32 and sorted(np.unique(labels)) == [0, 1, 2, 3]
    assert (labels[a] == 1).all()
    assert (labels[spill & ~a] == 2).all() and (labels == 2).sum() == 12
    assert (labels[c] == 3).all() and (labels[~(a | spill | c)] == 0).all()
    strict = to_label_image(recs, a.shape, min_free_fraction=0.8)  # 12/16 < 0.8: dropped
    assert sorted(np.unique(strict)) == [0, 1, 2] and (strict[c] == 2).all()
    with pytest.raises(ValueError, match="order"):
        to_label_image(recs, a.shape, order="smallest")


def test_link_slices_synthetic_stack():
    z = np.zeros((4, 20, 20), np.uint16)
    z[0, 2:8, 2:8] = 5  # object A
    z[1, 3:9, 2:8] = 1  # A shifted: IoU 5/7
    z[2, 3:9, 3:9] = 2
    z[0, 12:18, 12:18] = 7  # object B, missed in slice 1, back in slice 2
    z[2, 12:18, 12:18] = 9
    z[1, 12:14, 2:4] = 3  # small, overlaps nothing
    z[3, 3:9, 3:9] = 4  # A again
    z[3, 3:5, 12:14] = 6
    out = link_slices(z, max_gap=0)
    a = out[0, 4, 4]
    assert out[1, 6, 5] == a and out[2, 6, 6] == a and out[3, 6, 6] == a
    ids = np.unique(out[out > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert len(ids) == 5  # A, B, small, B again, last small
    assert out[2, 15, 15] != out[0, 15, 15]
    assert ((out > 0) == (z > 0)).all()
    bridged = link_slices(z)  # default max_gap=1: B continues across the slice it was missed
    assert bridged[2, 15, 15] == bridged[0, 15, 15] and bridged[2, 6, 6] == bridged[0, 4, 4]
    assert len(np.unique(bridged[bridged > 0])) == 4
    assert drop_short_objects(bridged, 2).max() == 2  # A and B; the one-slice objects go
    kept = drop_short_objects(bridged, 2)
    assert (kept[0, 4, 4], kept[0, 15, 15], kept[1, 13, 3], kept[3, 4, 13]) == (1, 2, 0, 0)
    with pytest.raises(ValueError, match="min_slices"):
        drop_short_objects(bridged, 0)
    # a strict threshold breaks the weakest link (IoU 5/7 ~ 0.71)
    strict = link_slices(z, min_overlap=0.8)
    assert strict[1, 6, 5] != strict[0, 4, 4] and strict[2, 6, 6] != strict[1, 6, 5]


def test_match_labels_one_to_one_and_overlap_metric():
    prev = np.zeros((10, 10), int)
    prev[:, :5] = 1
    cur = np.zeros_like(prev)
    cur[:5, :5] = 1  # half of prev 1
    cur[5:, :5] = 2  # the other half
    m = match_labels(prev, cur, 0.3)
    assert list(m.values()) == [1] and len(m) == 1  # only one of the halves
    assert match_labels(prev, cur, 0.6) == {}
    assert len(match_labels(prev, cur, 0.9, metric="overlap")) == 1
    with pytest.raises(ValueError, match="metric"):
        match_labels(prev, cur, metric="dice")


def _former_match_labels(prev, cur, min_overlap, metric):
    """match_labels as it was before the overlap counting moved to napari_sam.masks."""
    prev, cur = np.asarray(prev).ravel(), np.asarray(cur).ravel()
    both = (prev > 0) & (cur > 0)
    if not both.any():
        return {}
    pairs, inter = np.unique(np.stack([cur[both], prev[both]]), axis=1, return_counts=True)
    ids_c, area_c = np.unique(cur[cur > 0], return_counts=True)
    ids_p, area_p = np.unique(prev[prev > 0], return_counts=True)
    ac = area_c[np.searchsorted(ids_c, pairs[0])]
    ap = area_p[np.searchsorted(ids_p, pairs[1])]
    score = inter / (ac + ap - inter) if metric == "iou" else inter / np.minimum(ac, ap)
    out, used = {}, set()
    for j in np.argsort(-score, kind="stable"):
        c, p = int(pairs[0, j]), int(pairs[1, j])
        if score[j] < min_overlap:
            break
        if c not in out and p not in used:
            out[c] = p
            used.add(p)
    return out


def test_shared_primitives_give_the_former_results():
    rng = np.random.default_rng(3)
    for _ in range(20):
        prev = rng.integers(0, 6, (12, 14)).astype(np.uint32)
        cur = np.where(rng.random((12, 14)) < 0.7, prev, rng.integers(0, 6, (12, 14)))
        for metric in ("iou", "overlap"):
            for t in (0.0, 0.3, 0.6):
                assert match_labels(prev, cur, t, metric) == _former_match_labels(
                    prev, cur, t, metric
                )
        for i in range(1, 6):
            m = cur == i
            if m.any():
                ys, xs = np.nonzero(m)
                former = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
                np.testing.assert_array_equal(bounding_box(m), former)
                np.testing.assert_array_equal(mask_to_box(m), former)
    with pytest.raises(ValueError, match="empty"):
        bounding_box(np.zeros((3, 3), bool))
