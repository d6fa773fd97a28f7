"""Fine-tuning: the loss goes down, weights round-trip, runs resume and are reproducible."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from napari_sam import create_model
from napari_sam.model import SegmentAnythingModel
from napari_sam.train.synthetic import make_nuclei_2d
from napari_sam.train.training import TrainConfig, Trainer, focal_loss, mask_iou
from napari_sam.weights import model_config
from napari_sam.weights.key_map import export_state_dict

from small_configs import TINY


def fixed_sampler():
    image, labels = make_nuclei_2d((64, 64), seed=123, density=2e-3)
    x = np.clip((image - np.percentile(image, 0.1)) / np.ptp(image), 0, 1) * 255
    rgb = np.repeat(x[..., None], 3, -1).astype(np.float32)
    return lambda rng, step: (rgb, labels)


def new_trainer(workdir=None, steps=12, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = SegmentAnythingModel(model_config("sam_tiny_nuclei", **TINY))
    cfg = TrainConfig(
        steps=steps, batch_size=2, objects_per_image=2, warmup_steps=2, learning_rate=3e-3,
        seed=seed, checkpoint_every=100, **kwargs,
    )  # fmt: skip
    return Trainer(model, fixed_sampler(), cfg, workdir=workdir)


def test_loss_goes_down_and_weights_round_trip(tmp_path):
    trainer = new_trainer(steps=16, box_probability=0.0)  # clicks (the box steps: below)
    before = {k: v.copy() for k, v in export_state_dict(trainer.model).items()}
    losses = trainer.fit(progress=False)
    assert len(losses) == 16 and np.all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    after = export_state_dict(trainer.model)
    changed = [k for k in after if not np.array_equal(after[k], before[k])]
    assert len(changed) > 0.8 * len(after)  # (box-corner embeddings move on box steps only)
    path = tmp_path / "tiny.npz"
    np.savez(path, **after)
    loaded = create_model("sam_tiny_nuclei", pretrained=path, **TINY)
    for key, value in export_state_dict(loaded).items():
        np.testing.assert_array_equal(value, after[key], err_msg=key)
    inputs = loaded.dummy_inputs
    for a, b in zip(loaded(inputs), trainer.model(inputs), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_and_reproducibility(tmp_path):
    opts = dict(steps=6, box_probability=1.0, correction_rounds=0)  # box prompts every step
    first = new_trainer(tmp_path, **opts)
    interrupted = first.fit(progress=False, max_steps=4)  # stops, checkpointing at step 4
    resumed = new_trainer(tmp_path, **opts)  # a fresh trainer, as after a crash
    assert int(resumed.step.numpy()) == 4  # picked up the checkpoint written at the stop
    rest = resumed.fit(progress=False)
    straight = first.fit(progress=False)  # the first trainer goes on as if never stopped
    assert len(interrupted) == 4 and len(rest) == 2 and len(straight) == 2
    assert np.all(np.isfinite(interrupted)) and len(set(interrupted + rest)) == 6
    np.testing.assert_allclose(rest, straight, rtol=1e-4)  # same seed and state: same run


def test_frozen_encoder_keeps_encoder_weights():
    keras.utils.set_random_seed(1)
    model = SegmentAnythingModel(model_config("sam_tiny_nuclei", **TINY))
    cfg = TrainConfig(
        steps=1, batch_size=1, objects_per_image=2, freeze_image_encoder=True,
        box_probability=0.0, correction_rounds=0,
    )  # fmt: skip
    before = [v.numpy().copy() for v in model.image_encoder.weights]
    Trainer(model, fixed_sampler(), cfg).fit(progress=False)
    for b, v in zip(before, model.image_encoder.weights, strict=True):
        np.testing.assert_array_equal(b, v.numpy())


def test_losses_behave():
    t = np.zeros((1, 8, 8), np.float32)
    t[0, 2:6, 2:6] = 1
    good, bad = (t * 20 - 10), (-t * 20 + 10)
    assert float(focal_loss(good, t)[0]) < float(focal_loss(bad, t)[0])
    assert float(mask_iou(good > 0, t)[0]) == pytest.approx(1.0)
    assert float(mask_iou(bad > 0, t)[0]) == pytest.approx(0.0)
