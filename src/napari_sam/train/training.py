"""Fine-tuning SAM on images with instance labels (the model's ``training=True`` path).

Prompts are sampled as in the SAM paper: a point inside the object or a jittered box, then
corrective rounds that add a point from the error region (positive where the object was
missed, negative where the prediction spilled over) with the previous logits as mask prompt.
Loss: focal + dice on the masks and MSE between the predicted and the actual IoU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy import ndimage as ndi

from ..masks import mask_to_box
from ..model.sam import upscale_logits
from ..predict.predictor import default_preprocessing
from .loop import SteppedTraining


@dataclass
class TrainConfig:
    """Settings of a training run.

    Parameters
    ----------
    steps : int
        Number of optimisation steps.
    batch_size : int
        Images per step.
    objects_per_image : int
        Instances sampled per image (each is one prompt sequence).
    correction_rounds : int
        Corrective rounds after the first prompt (each adds a point and the mask prompt).
    learning_rate, weight_decay : float
        AdamW settings; the rate warms up linearly, then follows a cosine decay.
    warmup_steps : int
        Steps of linear warm-up.
    freeze_image_encoder : bool
        Train only the prompt encoder and mask decoder on top of a frozen image encoder.
    box_probability : float
        Probability that a step starts from a box rather than a point.
    mask_prompt_probability : float
        Probability that a step's corrective rounds get the previous logits as mask prompt
        (as in the SAM paper: 1); otherwise they see the points alone, as when a user adds a
        point without the tool passing the previous mask.
    interior_point_probability : float
        Probability that a first point is drawn with a weight growing with the distance to
        the object's outline (deep inside the object, where users click) rather than
        uniformly over the object as in the SAM paper.
    box_jitter : float
        Standard deviation of box corner noise as a fraction of the box side (max 20 px).
    focal_weight, dice_weight, iou_weight : float
        Loss weights (the paper uses 20 : 1 : 1).
    focal_alpha : float
        Weight of the object pixels in the focal loss (background gets ``1 - alpha``).
    seed : int
        Seeds data sampling and initialisation; runs with the same seed are reproducible.
    checkpoint_every : int
        Steps between checkpoints (resume picks up the latest one).
    """

    steps: int = 2000
    batch_size: int = 4
    objects_per_image: int = 6
    correction_rounds: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    freeze_image_encoder: bool = False
    box_probability: float = 0.5
    interior_point_probability: float = 0.0
    mask_prompt_probability: float = 1.0
    box_jitter: float = 0.1
    focal_weight: float = 20.0
    focal_alpha: float = 0.25
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100


def focal_loss(logits, targets, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss averaged over pixels, per mask: (..., H, W) -> (...)."""
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return tf.reduce_mean(loss, axis=(-2, -1))


def dice_loss(logits, targets):
    """Soft dice loss per mask: (..., H, W) -> (...)."""
    p = tf.sigmoid(logits)
    num = 2 * tf.reduce_sum(p * targets, axis=(-2, -1))
    den = tf.reduce_sum(p, axis=(-2, -1)) + tf.reduce_sum(targets, axis=(-2, -1))
    return 1 - (num + 1) / (den + 1)


def mask_iou(pred, targets):
    """IoU of boolean predictions with targets: (..., H, W) -> (...)."""
    inter = tf.reduce_sum(tf.cast(pred & (targets > 0.5), tf.float32), axis=(-2, -1))
    union = tf.reduce_sum(tf.cast(pred | (targets > 0.5), tf.float32), axis=(-2, -1))
    return inter / tf.maximum(union, 1.0)


def sample_objects(labels: np.ndarray, k: int, rng) -> list[int]:
    """Choose ``k`` instance ids of a label image (repeating when there are fewer)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if len(ids) == 0:
        raise ValueError("a training image has no labelled objects")
    return list(rng.choice(ids, size=k, replace=len(ids) < k))


def random_point(mask: np.ndarray, rng, interior: bool = False) -> tuple[float, float]:
    """A pixel (x, y) of a boolean mask, uniform or (``interior``) weighted towards its middle.

    The interior weight is the squared distance to the nearest pixel outside the mask.
    """
    ys, xs = np.nonzero(mask)
    if interior:
        weight = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][ys, xs] ** 2
        i = rng.choice(len(ys), p=weight / weight.sum())
    else:
        i = rng.integers(len(ys))
    return float(xs[i]), float(ys[i])


def jittered_box(mask: np.ndarray, jitter: float, rng) -> np.ndarray:
    """The bounding box (x0, y0, x1, y1) of a mask with noise on each corner."""
    box = mask_to_box(mask).astype(np.float64)  # the same integers as before
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2) + 1
    noise = np.clip(rng.normal(0, jitter * side), -20, 20)
    h, w = mask.shape
    return np.clip(box + noise, 0, [w - 1, h - 1, w - 1, h - 1])


def _correction_points(pred, target, seed):
    """One point per mask, uniform over the error region (N, H, W) -> (N, 2), (N,).

    Positive (1) on a missed pixel, negative (0) where the prediction spilled over; a
    point inside the object when there is no error.
    """
    target = tf.cast(target, tf.bool)
    err = tf.math.logical_xor(pred, target)
    has_err = tf.reduce_any(err, axis=(1, 2), keepdims=True)
    region = tf.where(has_err, err, target)
    w = tf.shape(target)[2]
    flat = tf.reshape(region, (tf.shape(target)[0], -1))
    logits = tf.where(flat, 0.0, -1e9)
    idx = tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0]
    xy = tf.cast(tf.stack([idx % w, idx // w], axis=-1), tf.float32)
    label = tf.gather(tf.reshape(target, (tf.shape(target)[0], -1)), idx, batch_dims=1)
    return xy, tf.cast(label, tf.float32)


class Trainer(SteppedTraining):
    """Trains a :class:`~napari_sam.SegmentAnythingModel` on sampled (image, labels) pairs.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model to train (its input size is the training image size).
    sample : callable
        ``sample(rng, step) -> (image (H, W, C) float in [0, 255], labels (H, W) int)`` with
        (H, W) equal to the model's input size; ``step`` allows a curriculum.
    config : TrainConfig
        Training settings.
    workdir : path, optional
        Where checkpoints and the loss log go; training resumes from the latest one.
    """

    def __init__(self, model, sample: Callable, config: TrainConfig, workdir=None):
        self.model, self.sample = model, sample
        self.preprocess = default_preprocessing(model.cfg)
        if config.freeze_image_encoder:
            model.image_encoder.trainable = False
        self._setup(config, workdir, model.trainable_variables, model=model)
        self._step = {}  # graphs by (box start, mask prompt), traced on first use

    def _batch(self, step: int):
        rng = np.random.default_rng([self.cfg.seed, step])
        images, targets = [], []
        for _ in range(self.cfg.batch_size):
            image, labels = self.sample(rng, step)
            images.append(self.preprocess(image))
            ids = sample_objects(labels, self.cfg.objects_per_image, rng)
            targets += [labels == i for i in ids]
        return np.stack(images).astype(np.float32), np.stack(targets), rng

    def _losses(self, up, iou_pred, targets, multimask):
        t = tf.broadcast_to(tf.cast(targets[:, None], tf.float32), tf.shape(up))
        per_mask = self.cfg.focal_weight * focal_loss(
            up, t, alpha=self.cfg.focal_alpha
        ) + self.cfg.dice_weight * dice_loss(up, t)
        actual = tf.stop_gradient(mask_iou(up > 0, t))
        iou_loss = tf.reduce_mean(tf.square(iou_pred - actual), axis=-1)
        mask_loss = tf.reduce_min(per_mask, axis=-1) if multimask else per_mask[:, 0]
        return tf.reduce_mean(mask_loss + self.cfg.iou_weight * iou_loss), actual

    def train_step(self) -> float:
        """Run one optimisation step; returns the loss."""
        cfg = self.cfg
        images, targets, rng = self._batch(int(self.step.numpy()))
        n = len(targets)
        use_box = bool(rng.random() < cfg.box_probability)
        if use_box:
            boxes = np.stack([jittered_box(t, cfg.box_jitter, rng) for t in targets])[:, None]
            points, labels = np.zeros((n, 0, 2)), np.zeros((n, 0))
        else:
            boxes = np.zeros((n, 0, 4))
            inner = rng.random(n) < cfg.interior_point_probability
            points = np.array(
                [[random_point(t, rng, b)] for t, b in zip(targets, inner, strict=True)]
            )
            labels = np.ones((n, 1))
        seed = rng.integers(0, 2**31 - 1, size=2)
        use_mask = cfg.mask_prompt_probability >= 1 or rng.random() < cfg.mask_prompt_probability
        use_mask = use_mask and cfg.correction_rounds > 0  # no rounds: the same graph
        if (use_box, use_mask) not in self._step:
            self._step[use_box, use_mask] = self._graph_step(use_box, use_mask)
        f32 = np.float32
        loss, iou = self._step[use_box, use_mask](
            images, targets, points.astype(f32), labels.astype(f32), boxes.astype(f32), seed
        )
        self.step.assign_add(1)
        self.last_iou = float(iou.numpy())  # IoU of the best mask after the last round
        return float(loss.numpy())

    def _one_step(self) -> tuple[float, str, float]:
        return self.train_step(), "iou", self.last_iou

    def _graph_step(self, use_box: bool, use_mask: bool = True):
        cfg, k, size = self.cfg, self.cfg.objects_per_image, self.model.cfg.input_size

        def step(images, targets, points, labels, boxes, seed):
            n = tf.shape(targets)[0]
            masks = tf.zeros((n, 0, *self.model.mask_size()))
            total = 0.0
            with tf.GradientTape() as tape:
                emb = tf.repeat(self.model.embed_images(images, training=True), k, axis=0)
                for r in range(cfg.correction_rounds + 1):
                    multimask = r == 0 and not use_box
                    logits, iou_pred = self.model.decode(
                        emb, points, labels, boxes, masks, size, multimask
                    )
                    up = upscale_logits(logits, size)
                    loss, actual = self._losses(up, iou_pred, targets, multimask)
                    total += loss
                    mean_iou = tf.reduce_mean(tf.reduce_max(actual, axis=-1))
                    if r == cfg.correction_rounds:
                        break
                    best = tf.argmax(actual, axis=-1) if multimask else tf.zeros(n, tf.int64)
                    pred = tf.gather(up, best, axis=1, batch_dims=1) > 0
                    new, new_label = _correction_points(pred, targets, seed + r)
                    points = tf.concat([points, new[:, None]], axis=1)
                    labels = tf.concat([labels, new_label[:, None]], axis=1)
                    if use_mask:
                        masks = tf.stop_gradient(tf.gather(logits, best, axis=1, batch_dims=1))
                        masks = masks[:, None]
                total = total / (cfg.correction_rounds + 1)
            grads = tape.gradient(total, self.variables)
            self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return total, mean_iou

        return tf.function(step)
