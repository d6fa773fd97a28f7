"""Measuring prompted segmentation quality on images with known instance labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..masks import bounding_box, iou, label_overlaps, object_centre
from ..stacks.normalize import Normalization
from ..stacks.view import StackView


def touching_neighbours(labels: np.ndarray, i: int) -> list[int]:
    """Labels that share an edge with object ``i``."""
    ring = ndimage.binary_dilation(labels == i) & (labels != i) & (labels > 0)
    return sorted(int(v) for v in np.unique(labels[ring]))


@dataclass
class PromptScores:
    """Mean IoU per prompt kind over the evaluated objects."""

    point: float
    box: float
    point_pair: float  # one positive point, no negative (for the objects with a neighbour)
    point_and_negative: float  # the same objects with a negative point on the neighbour
    n_objects: int
    n_touching: int


def normalised_rgb(image: np.ndarray) -> np.ndarray:
    """A 2-D image mapped to [0, 255] with the default stack normalisation, as RGB."""
    view = StackView(image, "YX")
    x = Normalization().fit(view).apply(view.get_slice(0))
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def evaluate_prompts(predictor, image: np.ndarray, labels: np.ndarray) -> dict[str, list]:
    """IoU of every object of ``labels`` for a centre point, a box and point + negative.

    ``image`` is (H, W) raw data, normalised with the default stack normalisation.
    """
    predictor.set_image(normalised_rgb(image))
    out = {"point": [], "box": [], "point_pair": [], "point_and_negative": []}
    for i in range(1, int(labels.max()) + 1):
        truth = labels == i
        if not truth.any():
            continue
        centre = np.array([object_centre(truth)])
        masks, scores, _ = predictor(points=centre, labels=np.array([1]))
        point_iou = iou(masks[np.argmax(scores)], truth)
        out["point"].append(point_iou)
        masks, _, _ = predictor(boxes=bounding_box(truth)[None], multimask_output=False)
        out["box"].append(iou(masks[0], truth))
        neighbours = touching_neighbours(labels, i)
        if neighbours:
            neg = object_centre(labels == neighbours[0])
            pts = np.array([centre[0], neg])
            masks, _, _ = predictor(points=pts, labels=np.array([1, 0]), multimask_output=False)
            out["point_pair"].append(point_iou)
            out["point_and_negative"].append(iou(masks[0], truth))
    return out


def evaluate_on_synthetic(predictor, seeds, shape=(256, 256), **params) -> PromptScores:
    """Mean IoUs over freshly generated 2-D synthetic nuclei images (one per seed);
    ``params``: other generator fields (e.g. a style of :mod:`napari_sam.train.styles`)."""
    from .synthetic import make_nuclei_2d

    acc: dict[str, list] = {"point": [], "box": [], "point_pair": [], "point_and_negative": []}
    for seed in seeds:
        image, labels = make_nuclei_2d(shape, seed=int(seed), **params)
        for key, values in evaluate_prompts(predictor, image, labels).items():
            acc[key] += values
    return PromptScores(
        **{k: float(np.mean(v)) if v else float("nan") for k, v in acc.items()},
        n_objects=len(acc["point"]),
        n_touching=len(acc["point_pair"]),
    )


@dataclass
class InstanceScores:
    """Instance matching of a label image against the true labels."""

    f1: float
    precision: float
    recall: float
    n_true: int
    n_predicted: int
    n_matched: int


def instance_f1(predicted: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> InstanceScores:
    """F1 of predicted instances against true ones, matched one to one at IoU > ``threshold``.

    Works for label images of any dimension (2-D slices or 3-D stacks: the IoU of 3-D
    objects). With ``threshold >= 0.5`` a match is unique, so no assignment is needed.
    """
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape} differ in shape")
    if threshold < 0.5:
        raise ValueError(f"threshold must be at least 0.5 for unique matches, got {threshold}")
    overlaps = label_overlaps(predicted.astype(np.int64), truth.astype(np.int64))
    matched = int(np.count_nonzero(overlaps.iou() > threshold))
    n_p, n_t = len(overlaps.ids_a), len(overlaps.ids_b)
    precision = matched / n_p if n_p else 1.0
    recall = matched / n_t if n_t else 1.0
    f1 = 2 * matched / (n_p + n_t) if n_p + n_t else 1.0
    return InstanceScores(f1, precision, recall, n_t, n_p, matched)
