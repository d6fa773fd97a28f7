"""The model survives a Keras ``.keras`` save and load: same configuration, weights, outputs."""

from __future__ import annotations

import keras
import numpy as np

from napari_sam import SegmentAnythingModel
from napari_sam.weights import model_config

from small_configs import TINY


def test_keras_save_and_load_round_trip(tmp_path):
    keras.utils.set_random_seed(3)
    model = SegmentAnythingModel(model_config("sam_vit_b", **TINY))
    inputs = model.dummy_inputs
    want = model(inputs, multimask_output=True, return_logits=True)
    path = tmp_path / "m.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)

    assert type(loaded) is SegmentAnythingModel
    assert loaded.cfg == model.cfg
    assert loaded.name == model.name
    saved = {w.path: w.numpy() for w in model.weights}
    got = {w.path: w.numpy() for w in loaded.weights}
    assert sorted(got) == sorted(saved)
    for name, value in saved.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    # Same process, same ops on the same weights and inputs: the outputs are bit for bit
    # equal, so exact equality (not a tolerance) is the right check.
    out = loaded(inputs, multimask_output=True, return_logits=True)
    for a, b in zip(out, want, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # the encoder's precision is part of the configuration
    model.set_encoder_dtype("bfloat16")
    clone = SegmentAnythingModel.from_config(model.get_config())
    assert clone.encoder_dtype == "bfloat16"
    assert SegmentAnythingModel.from_config({"cfg": model.cfg.to_dict()}).encoder_dtype == "float32"
