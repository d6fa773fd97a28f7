"""Training an instance decoder (foreground, centre and boundary distances) on a frozen encoder.

The decoder is :class:`~napari_sam.model.instance_decoder.InstanceDecoder`, the architecture of
micro-sam's (torch-em's UNETR without encoder skips); the image encoder stays as it is, so the
model's prompted masks do not change. Targets (:func:`instance_targets`) follow torch-em's
``PerObjectDistanceTransform`` as micro-sam trains with it: a foreground map, each object's
distance to its centre (its deepest interior point) and its distance to its own outline, both
normalised per object to [0, 1] and 0 where the watershed seeds belong (see
:mod:`napari_sam.segment.ais`). Loss: binary cross-entropy + dice on the foreground, mean
squared error on the distances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from scipy import ndimage as ndi

from ..predict.predictor import default_preprocessing
from .loop import SteppedTraining

__all__ = ["DecoderTrainConfig", "DecoderTrainer", "instance_targets"]


def instance_targets(labels: np.ndarray) -> np.ndarray:
    """The decoder's three training maps (H, W, 3) float32 of 2-D instance labels.

    Channel 0: foreground (0 or 1). Channel 1: distance to the object's centre (the point
    farthest from its outline) over the object's largest such distance (0 at the centre, up
    to 1). Channel 2: 1 - distance to the object's own outline over its largest (0 at the
    centre, near 1 at the outline; touching objects are separated by their own outlines).
    Both distance channels are 1 on the background.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels: expected a 2-D array, got shape {labels.shape}")
    out = np.zeros((*labels.shape, 3), np.float32)
    out[..., 0] = labels > 0
    out[..., 1:] = 1.0
    for i, box in enumerate(ndi.find_objects(labels.astype(np.int64)), start=1):
        if box is None:
            continue
        obj = labels[box] == i
        edt = ndi.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
        cy, cx = np.unravel_index(np.argmax(edt), edt.shape)
        yy, xx = np.nonzero(obj)
        to_centre = np.hypot(yy - cy, xx - cx)
        view = out[box]
        view[yy, xx, 1] = to_centre / max(float(to_centre.max()), 1.0)
        view[yy, xx, 2] = 1.0 - edt[yy, xx] / float(edt.max())
    return out


@dataclass
class DecoderTrainConfig:
    """Settings of a decoder training run.

    Parameters
    ----------
    steps, batch_size : int
        Optimisation steps and images per step.
    learning_rate, weight_decay : float
        AdamW; the rate warms up linearly over ``warmup_steps``, then follows a cosine decay.
    distance_weight : float
        Weight of the distance maps' squared error against the foreground's loss.
    seed : int
        Seeds data sampling; runs with the same seed draw the same images.
    checkpoint_every : int
        Steps between checkpoints (resume picks up the latest one).
    """

    steps: int = 3000
    batch_size: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    distance_weight: float = 5.0
    seed: int = 0
    checkpoint_every: int = 100


def _losses(pred, target, distance_weight):
    eps = 1e-6
    p, t = pred[..., 0], target[..., 0]
    bce = -tf.reduce_mean(t * tf.math.log(p + eps) + (1 - t) * tf.math.log(1 - p + eps))
    dice = 1 - (2 * tf.reduce_sum(p * t) + 1) / (tf.reduce_sum(p) + tf.reduce_sum(t) + 1)
    mse = tf.reduce_mean(tf.square(pred[..., 1:] - target[..., 1:]))
    return bce + dice + distance_weight * mse, mse


class DecoderTrainer(SteppedTraining):
    """Trains ``decoder`` on embeddings of ``model``'s (frozen) image encoder.

    Parameters
    ----------
    model : SegmentAnythingModel
        Its image encoder makes the embeddings; nothing of it is trained.
    decoder : InstanceDecoder
        Its output must be the model's input size (``2**depth`` x the embedding grid).
    sample : callable
        ``sample(rng, step) -> (image (H, W, 3) in [0, 255], labels (H, W))`` at the model's
        input size.
    config : DecoderTrainConfig
    workdir : path, optional
        Checkpoints and the loss log; training resumes from the latest checkpoint.
    pool : int, optional
        Draw the batches from a pool of this many samples, embedded once (kept in
        ``workdir/pool.npz`` for a resumed run), instead of new images every step: the
        encoder and the image generator then cost nothing per step.
    """

    def __init__(self, model, decoder, sample: Callable, config: DecoderTrainConfig,
                 workdir=None, pool: int | None = None):  # fmt: skip
        self.model, self.decoder, self.sample = model, decoder, sample
        self.preprocess = default_preprocessing(model.cfg)
        self._setup(config, workdir, decoder.trainable_variables, decoder=decoder)
        self._graph = tf.function(self._step_fn)
        self._embed = tf.function(model.embed_images)
        self.pool = None if not pool else self._pool(int(pool))

    def _pool(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` embeddings (float16) and targets (float16), made once (or read back)."""
        from tqdm.auto import tqdm

        from .._atomic import write_atomic

        path = None if self.workdir is None else self.workdir / "pool.npz"
        if path is not None and path.is_file():
            with np.load(path) as f:
                if len(f["embeddings"]) == n:
                    return f["embeddings"], f["targets"]
        embeddings, targets = [], []
        for start in tqdm(range(0, n, 8), desc="embedding the pool"):
            images, t = self._draw(np.random.default_rng([self.cfg.seed, 1 << 40, start]),
                                   min(8, n - start))  # fmt: skip
            embeddings.append(self._embed(tf.constant(images)).numpy().astype(np.float16))
            targets.append(t.astype(np.float16))
        out = np.concatenate(embeddings), np.concatenate(targets)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda f: np.savez(f, embeddings=out[0], targets=out[1]))
        return out

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Image embeddings (B, h, w, E) and their targets (B, H, W, 3) of step ``step``."""
        rng = np.random.default_rng([self.cfg.seed, step])
        if self.pool is not None:
            idx = np.sort(rng.choice(len(self.pool[0]), self.cfg.batch_size, replace=False))
            return (self.pool[0][idx].astype(np.float32), self.pool[1][idx].astype(np.float32))
        images, targets = self._draw(rng, self.cfg.batch_size, step)
        return self._embed(tf.constant(images)).numpy(), targets

    def _draw(self, rng, n: int, step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` new preprocessed images (randomly rotated and flipped) and their targets."""
        images, targets = [], []
        for _ in range(n):
            image, labels = self.sample(rng, step)
            k = int(rng.integers(4))  # a random rotation and flip
            flip = bool(rng.integers(2))
            image, labels = np.rot90(image, k), np.rot90(labels, k)
            if flip:
                image, labels = image[:, ::-1], labels[:, ::-1]
            images.append(self.preprocess(np.ascontiguousarray(image)))
            targets.append(instance_targets(np.ascontiguousarray(labels)))
        return np.stack(images).astype(np.float32), np.stack(targets)

    def _step_fn(self, emb, targets):
        with tf.GradientTape() as tape:
            loss, mse = _losses(self.decoder(emb), targets, self.cfg.distance_weight)
        grads = tape.gradient(loss, self.variables)
        self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
        return loss, mse

    def train_step(self) -> tuple[float, float]:
        """One optimisation step; returns the loss and the distances' squared error."""
        embeddings, targets = self.batch(int(self.step.numpy()))
        loss, mse = self._graph(tf.constant(embeddings), tf.constant(targets))
        self.step.assign_add(1)
        return float(loss.numpy()), float(mse.numpy())

    def _one_step(self) -> tuple[float, str, float]:
        loss, mse = self.train_step()
        return loss, "mse", mse
