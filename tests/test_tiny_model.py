"""The shipped sam_tiny_nuclei model really segments nuclei (held-out synthetic images)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam import SAMPredictor, create_model, list_models
from napari_sam.train.evaluation import evaluate_on_synthetic, iou, normalised_rgb, object_centre
from napari_sam.train.synthetic import HALF_MAXIMUM_EDGE, make_nuclei_2d
from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS

HELD_OUT_SEEDS = range(100, 106)  # training draws seeds >= 1_000_000
AUTO_SEED = 200
# labels where people draw them; the generator's default edge is the foot of the intensity
# ramp, wider than any hand label
EDGE = HALF_MAXIMUM_EDGE

pytestmark = pytest.mark.skipif(
    not TINY_NUCLEI_WEIGHTS.is_file(),
    reason="the sam_tiny_nuclei weights do not meet the targets yet and are not shipped "
    "(issue #3, docs/tiny-model.md); these acceptance tests run once they are",
)


@pytest.fixture(scope="module")
def predictor():
    assert "sam_tiny_nuclei" in list_models()
    return SAMPredictor(create_model("sam_tiny_nuclei", pretrained=True))


def test_shipped_weights_are_small():
    assert TINY_NUCLEI_WEIGHTS.stat().st_size <= 10_000_000


def test_prompted_iou_on_held_out_images(predictor):
    scores = evaluate_on_synthetic(predictor, HELD_OUT_SEEDS, edge_level=EDGE)
    assert scores.n_objects > 100 and scores.n_touching > 10
    assert scores.point >= 0.85, scores
    assert scores.box >= 0.90, scores
    assert scores.point_and_negative >= scores.point_pair, scores


def test_click_selects_the_clicked_nucleus(predictor):
    """A click at a nucleus's centre selects that nucleus (not a neighbour, not the union)."""
    selected, good, total = 0, 0, 0
    for seed in (7, 8, 9):
        image, labels = make_nuclei_2d((256, 256), seed=seed, edge_level=EDGE)
        predictor.set_image(normalised_rgb(image))
        for i in range(1, int(labels.max()) + 1):
            truth = labels == i
            point = np.array([object_centre(truth)])
            masks, scores, _ = predictor(points=point, labels=np.array([1]))
            best = masks[np.argmax(scores)]
            # the mask overlaps the clicked nucleus far more than any other nucleus
            overlaps = np.bincount(labels[best], minlength=labels.max() + 1)[1:]
            selected += int(np.argmax(overlaps) == i - 1)
            good += int(iou(best, truth) > 0.7)
            total += 1
    assert total >= 50
    assert selected >= 0.9 * total, (selected, total)
    assert good >= 0.85 * total, (good, total)


def test_auto_finds_the_nuclei_of_a_held_out_3d_stack(tmp_path, capsys):
    """Issue [batch]: ``napari-sam auto`` with sam_tiny_nuclei, instance F1 >= 0.8 at IoU 0.5."""
    import tifffile

    from napari_sam.cli import main
    from napari_sam.train.evaluation import instance_f1
    from napari_sam.train.synthetic import make_nuclei_3d

    image, truth = make_nuclei_3d((8, 256, 256), seed=AUTO_SEED)  # 8 slices: F1 0.923, 20 nuclei
    tifffile.imwrite(tmp_path / "stack.tif", image, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "labels.tif"
    assert main(["auto", str(tmp_path / "stack.tif"), "--out", str(out),
                 "--model", "sam_tiny_nuclei", "--min-slices", "3"]) == 0  # fmt: skip
    scores = instance_f1(tifffile.imread(out), truth)
    print(scores)
    assert scores.n_true >= 15
    assert scores.f1 >= 0.8, scores
