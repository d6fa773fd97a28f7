"""[tiny-v2] 2: training an instance decoder on a frozen encoder; decoders of other depths."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from napari_sam.model import SegmentAnythingModel
from napari_sam.model.instance_decoder import DecoderConfig, InstanceDecoder
from napari_sam.segment.ais import AisSettings, instances_from_maps
from napari_sam.train.decoder_training import (
    DecoderTrainConfig,
    DecoderTrainer,
    instance_targets,
)
from napari_sam.train.evaluation import instance_f1
from napari_sam.train.synthetic import make_nuclei_2d
from napari_sam.weights import model_config
from napari_sam.weights.decoder import decoder_config, export_decoder_state, load_decoder
from napari_sam.weights.pth_reader import CheckpointError

from small_configs import TINY


def test_targets_give_back_the_labels_through_the_watershed():
    """The targets are what the post-processing expects: the watershed on the exact maps
    finds every nucleus, touching ones included."""
    _, labels = make_nuclei_2d((256, 256), seed=7, density=8e-4)
    t = instance_targets(labels)
    assert t.shape == (256, 256, 3) and t.dtype == np.float32
    assert 0 <= t.min() and t.max() <= 1
    np.testing.assert_array_equal(t[..., 0], labels > 0)
    assert np.all(t[labels == 0, 1:] == 1)
    for i in range(1, labels.max() + 1):  # 0 at each object's centre, both maps
        assert t[labels == i, 1].min() == 0 and t[labels == i, 2].min() == 0
    plain = AisSettings(foreground_smoothing=0, distance_smoothing=0)
    scores = instance_f1(instances_from_maps(t[..., 0], t[..., 1], t[..., 2], plain), labels)
    assert scores.n_true > 20 and scores.f1 > 0.97, scores


def test_targets_refuse_other_than_2d():
    with pytest.raises(ValueError, match="labels: expected a 2-D array"):
        instance_targets(np.zeros((2, 4, 4), int))


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_decoders_of_any_depth_export_and_load(depth):
    config = DecoderConfig(embed_dim=32, initial_features=4, depth=depth)
    decoder = InstanceDecoder(config)
    for w in decoder.weights:  # every tensor perturbed
        w.assign(np.random.default_rng(len(w.path)).normal(size=w.shape).astype("float32") * 0.1)
    state = export_decoder_state(decoder)
    assert decoder_config(state) == config
    loaded = load_decoder(state, embed_dim=32)
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 32)).astype("float32")
    out = np.asarray(loaded(x))
    assert out.shape == (1, 8 * 2**depth, 8 * 2**depth, 3)
    np.testing.assert_array_equal(out, np.asarray(decoder(x)))
    with pytest.raises(CheckpointError, match="embeddings of 32 channels"):
        load_decoder(state, source="d.npz", embed_dim=64)
    del state["deconv1.block.0.conv.weight"]
    with pytest.raises(CheckpointError, match="d.npz"):
        load_decoder(state, source="d.npz", embed_dim=32)


def _trainer(workdir=None, steps=10, pool=None):
    keras.utils.set_random_seed(0)
    model = SegmentAnythingModel(model_config("sam_tiny_nuclei", **TINY))
    decoder = InstanceDecoder(DecoderConfig(embed_dim=32, initial_features=4, depth=3))
    image, labels = make_nuclei_2d((64, 64), seed=3, density=2e-3)
    x = np.clip((image - np.percentile(image, 0.1)) / np.ptp(image), 0, 1) * 255
    rgb = np.repeat(x[..., None], 3, -1).astype(np.float32)
    cfg = DecoderTrainConfig(steps=steps, batch_size=2, warmup_steps=2, learning_rate=1e-2)
    return DecoderTrainer(model, decoder, lambda rng, step: (rgb, labels), cfg, workdir, pool)


def test_decoder_training_lowers_the_loss_leaves_the_encoder_and_resumes(tmp_path):
    trainer = _trainer(tmp_path, steps=16)
    encoder = [w.numpy().copy() for w in trainer.model.weights]
    losses = trainer.fit(progress=False, max_steps=12)
    assert len(losses) == 12 and np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    for before, w in zip(encoder, trainer.model.weights, strict=True):
        np.testing.assert_array_equal(before, w.numpy())  # the SAM model is not trained
    resumed = _trainer(tmp_path, steps=16)
    assert int(resumed.step.numpy()) == 12
    for a, b in zip(resumed.decoder.weights, trainer.decoder.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(resumed.fit(progress=False)) == 4


def test_a_pool_is_embedded_once_and_read_back(tmp_path):
    trainer = _trainer(tmp_path, steps=4, pool=6)
    embeddings, targets = trainer.pool
    assert embeddings.shape == (6, 8, 8, 32) and targets.shape == (6, 64, 64, 3)
    assert len(trainer.fit(progress=False)) == 4
    again = _trainer(tmp_path, steps=4, pool=6)
    np.testing.assert_array_equal(again.pool[0], embeddings)
    emb, t = trainer.batch(0)
    assert emb.shape == (2, 8, 8, 32) and emb.dtype == np.float32 and t.shape == (2, 64, 64, 3)
