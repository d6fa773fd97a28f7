"""StackPredictor and ModelEncoder: stored embeddings give the masks fresh ones give, never stale.

Small random-weight models only (input 64, patch 8: 8x8x32 embeddings).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from napari_sam import SAMPredictor
from napari_sam.predict.predictor import model_graphs
from napari_sam.stacks import SliceIndexError, StackView
from napari_sam.stacks.channels import ChannelSpec
from napari_sam.stacks.encoder import ModelEncoder, weights_hash
from napari_sam.stacks.normalize import Normalization
from napari_sam.stacks.stack_predictor import StackPredictor
from napari_sam.stacks.store import EmbeddingStore, StoreMismatchError
from napari_sam.weights import create_model

from small_configs import TINY

SMALL = TINY
N, H, W = 4, 40, 56
PROMPTS = dict(points=np.array([[20.0, 15.0], [40.0, 30.0]]), labels=np.array([1, 0]))
BOX = dict(boxes=np.array([[5.0, 4.0, 30.0, 33.0]]))
FIXED = Normalization.fixed(0, 4095)


def small_model(seed=0, in_channels=3):
    keras.utils.set_random_seed(seed)
    return create_model("sam_vit_b", in_channels=in_channels, **SMALL)


@pytest.fixture(scope="module")
def model():
    return small_model(0)


@pytest.fixture(scope="module")
def model_seed1():
    return small_model(1)


@pytest.fixture(scope="module")
def enc(model):
    """One encoder per model shared by the predictors of a test module: traced once."""
    return ModelEncoder(model)


@pytest.fixture(scope="module")
def enc1(model_seed1):
    return ModelEncoder(model_seed1)


_REFERENCE: dict[int, SAMPredictor] = {}


def blobs(n=N, seed=0, hi=4095, dtype=np.uint16):
    """Bright discs of varying size on a noisy background: ``(n, H, W)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    out = np.empty((n, H, W), np.float64)
    for i in range(n):
        r = 8 + 3 * i
        disc = (yy - 18) ** 2 + (xx - 24) ** 2 < r * r
        out[i] = 0.2 * hi * rng.random((H, W)) + 0.7 * hi * disc
    return out.round().astype(dtype)


def fresh_prediction(model, image, **prompts):
    """Masks from SAMPredictor.set_image of the already-normalised (H, W, C) float image.

    Compared bit for bit with a store's embeddings computed one slice at a time (batch of 1):
    deterministic, since SAMPredictor and ModelEncoder trace the same function with the same
    input signature and run it on the same batch shape in this process. (Other batch shapes
    differ by float rounding: see assert_close.)
    """
    p = _REFERENCE.setdefault(id(model), SAMPredictor(model))
    p.set_image(image)
    return p(**prompts, return_logits=True)


def prepared(sp, index):
    return sp.store.prepare(sp.view.get_slice(index))


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def nontrivial(masks):
    """Check the thresholded masks have both values: equality of all-False masks tests nothing."""
    assert 0.0 < np.mean(masks > 0) < 1.0


def test_encoder_protocol_and_no_retrace(model):
    enc = ModelEncoder(model, batch_size=2)
    assert enc.embedding_shape == (8, 8, 32)
    images = np.random.default_rng(0).uniform(0, 255, (3, H, W, 3)).astype(np.float32)
    out = enc.encode(images)
    assert out.shape == (3, 8, 8, 32) and out.dtype == np.float32
    single = enc.encode(images[1:2])
    assert enc.trace_count() == 1  # batches of 2, 1 and 1: one trace
    np.testing.assert_allclose(single[0], out[1], rtol=1e-5, atol=1e-5)
    p = SAMPredictor(model)
    p.set_image(images[1])
    # the same traced function on the same batch shape (1) in this process: bit identical
    np.testing.assert_array_equal(single, p.embedding.numpy())
    # signature: name, weights, input size, preprocessing, version all in it
    sig = enc.signature
    assert "model=sam_vit_b" in sig and f"weights={weights_hash(model)}" in sig
    assert "input=64x64" in sig and "in_channels=3" in sig and "mean=0.485" in sig
    assert ModelEncoder(model).signature == sig
    with pytest.raises(ValueError, match="preprocessing_id"):
        ModelEncoder(model, preprocessing=lambda x: x)
    custom = ModelEncoder(model, preprocessing=lambda x: x / 255.0, preprocessing_id="unit")
    assert custom.signature != sig and "custom(unit)" in custom.signature
    with pytest.raises(ValueError, match=r"images: expected a \(B, H, W, 3\)"):
        enc.encode(images[..., :2])


def test_signature_follows_every_weight(model):
    sig = ModelEncoder(model).signature
    var = model.mask_decoder.weights[-1]  # a decoder weight counts too ("all weights")
    old = var.numpy()
    try:
        var.assign(old + np.float32(1e-3))
        changed = ModelEncoder(model).signature
    finally:
        var.assign(old)
    assert changed != sig and ModelEncoder(model).signature == sig


def assert_close(a, b):
    """Predictions of two separate TensorFlow computations of an embedding (other batch
    shapes, runs or processes): equal to float rounding only, since oneDNN's rounding
    depends on the batch shape and the CPU kind (on AVX2 ~1e-7 differences in most values)."""
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


def test_round_trip_from_disk_bit_identical(tmp_path, model, enc, monkeypatch):
    sp = StackPredictor(model, StackView(blobs(), "ZYX"), store=tmp_path / "s", encoder=enc)
    assert tuple(sp.precompute(batch_size=2)) == (N, 0)
    # what precompute computed and stored (kept in memory by the store that wrote it)
    stored = {i: sp.get_embedding(i) for i in range(N)}
    kept = {i: sp.predict(i, **PROMPTS, return_logits=True) for i in (0, 2, 3)}
    kept_box = sp.predict(3, **BOX, multimask_output=False)
    # a new predictor reading only from disk: nothing in memory, the encoder is never called
    real, calls = enc.encode, []
    monkeypatch.setattr(enc, "encode", lambda images: calls.append(len(images)) or real(images))
    disk = StackPredictor(model, blobs(), axes="ZYX", store=tmp_path / "s", memory_budget=0,
                          encoder=enc)  # fmt: skip
    for i in range(N):  # bit for bit what was stored
        got = disk.get_embedding(i)
        assert got.dtype == stored[i].dtype == np.float32 and got.shape == stored[i].shape
        assert got.tobytes() == stored[i].tobytes(), f"slice {i} changed on disk"
    # the same embedding through the same prompt graph (same process, same shapes): the
    # predictions are bit identical too
    for i in (0, 3):
        got = disk.predict(i, **PROMPTS, return_logits=True)
        assert_same(got, kept[i])
        nontrivial(got[0])
    got = disk.predict(3, **BOX, multimask_output=False)
    assert got[0].dtype == bool and got[0].shape == (1, H, W)
    assert_same(got, kept_box)
    disk.set_slice((2,))  # the set_slice + __call__ form, an index tuple
    sp.set_slice(0)  # the shared SAMPredictor now holds another slice's embedding ...
    assert_same(disk(**PROMPTS, return_logits=True), kept[2])  # ... and is given slice 2 back
    assert calls == []
    # a fresh embedding of one slice alone (batch of 1, not 2): another computation, so equal
    # only to float rounding (oneDNN's rounding depends on the batch shape and the CPU kind)
    monkeypatch.setattr(enc, "encode", real)
    memory = StackPredictor(model, blobs(), axes="ZYX", encoder=enc)  # in memory only
    for i in (0, 3):
        np.testing.assert_allclose(memory.get_embedding(i), stored[i], rtol=1e-4, atol=1e-5)
        fresh = memory.predict(i, **PROMPTS, return_logits=True)
        assert_close(fresh, kept[i])
        # the masks of logits clear of the threshold are the same
        t = model.mask_threshold
        clear = np.abs(fresh[0] - t) > 1e-3
        np.testing.assert_array_equal((kept[i][0] > t)[clear], (fresh[0] > t)[clear])
        assert_close(fresh_prediction(model, prepared(disk, i), **PROMPTS), kept[i])


def test_dtype_invariance_default_normalization(model, enc):
    x = blobs(1, seed=3, hi=255, dtype=np.uint8)[0]
    variants = [x, x.astype(np.uint16) * 257, (x / 255).astype(np.float32)]
    results = []
    for data in variants:
        sp = StackPredictor(model, data, axes="YX", encoder=enc)
        assert sp.normalization.mode == "dtype"
        results.append(sp.predict(0, **PROMPTS, return_logits=True))
    nontrivial(results[0][0])
    # uint16 = 257 x: the same input through the same graph and batch shape: bit identical
    assert_same(results[0], results[1])
    # float32 x / 255 is normalised to x only within an ulp (see normalize.py), so the logits
    # agree to float rounding, not bit for bit, and so do the masks but where a logit is at
    # the threshold
    np.testing.assert_allclose(results[2][0], results[0][0], rtol=0, atol=1e-3)
    t = model.mask_threshold
    clear = np.abs(results[0][0] - t) > 1e-3
    np.testing.assert_array_equal((results[2][0] > t)[clear], (results[0][0] > t)[clear])
    assert np.mean((results[2][0] > t) == (results[0][0] > t)) > 0.99
    np.testing.assert_allclose(results[2][2], results[0][2], rtol=0, atol=1e-3)


def test_changed_slice_recomputed_not_stale(tmp_path, model, enc):
    data = blobs()
    kw = dict(axes="ZYX", normalization=FIXED, store=tmp_path / "s", encoder=enc)
    first = StackPredictor(model, data, **kw)
    assert tuple(first.precompute()) == (N, 0)
    old = first.predict(1, **PROMPTS, return_logits=True)
    edited = data.copy()
    edited[1] = blobs(N, seed=9)[3]  # another picture in slice 1, same stack-wide settings
    sp = StackPredictor(model, edited, **kw)
    assert tuple(sp.precompute()) == (1, N - 1)  # recomputed: neither refused nor reused
    got = sp.predict(1, **PROMPTS, return_logits=True)
    assert not np.allclose(got[2], old[2])  # the old embedding would have been stale
    assert_same(got, fresh_prediction(model, prepared(sp, 1), **PROMPTS))
    # an in-place edit in a live session: invalidate() makes the store check the content
    edited[1] = data[1]
    sp.invalidate(1)
    assert_same(sp.predict(1, **PROMPTS, return_logits=True), old)


def test_changed_slice_with_stack_wide_auto_normalization_is_refused(tmp_path, model, enc):
    data = blobs()  # uint16, not 8-bit: "auto" fits percentiles over the whole stack
    kw = dict(axes="ZYX", store=tmp_path / "s", encoder=enc)
    StackPredictor(model, data, **kw).precompute()
    edited = data.copy()
    edited[2] = edited[2] // 4
    with pytest.raises(StoreMismatchError, match="normalisation: stored"):
        StackPredictor(model, edited, **kw)
    sp = StackPredictor(model, edited, overwrite=True, **kw)
    assert tuple(sp.precompute()) == (N, 0)
    for i in (0, 2):
        got = sp.predict(i, **PROMPTS, return_logits=True)
        assert_same(got, fresh_prediction(model, prepared(sp, i), **PROMPTS))


@pytest.mark.parametrize("change", ["weights", "channels", "normalization"])
def test_other_ingredient_refused_then_recomputed(tmp_path, model, enc, enc1, change):
    rgb = np.stack([blobs(seed=s) for s in range(3)], axis=1)  # ZCYX
    base = dict(axes="ZCYX", channels=ChannelSpec("rgb", (0, 1, 2)), normalization=FIXED)
    StackPredictor(model, rgb, store=tmp_path / "s", encoder=enc, **base).precompute()
    old = StackPredictor(model, rgb, encoder=enc, **base).predict(2, **PROMPTS, return_logits=True)
    kw, new_enc = dict(base), enc
    if change == "weights":
        new_enc, label = enc1, "encoder signature"
    elif change == "channels":
        kw["channels"], label = ChannelSpec("rgb", (2, 1, 0)), "channel spec"
    else:
        kw["normalization"], label = Normalization.fixed(0, 3000), "normalisation"
    with pytest.raises(StoreMismatchError, match=f"{label}: stored"):
        StackPredictor(new_enc.model, rgb, store=tmp_path / "s", encoder=new_enc, **kw)
    sp = StackPredictor(
        new_enc.model, rgb, store=tmp_path / "s", overwrite=True, encoder=new_enc, **kw
    )
    assert tuple(sp.precompute()) == (N, 0)
    got = sp.predict(2, **PROMPTS, return_logits=True)
    assert not np.allclose(got[2], old[2])
    assert_same(got, fresh_prediction(new_enc.model, prepared(sp, 2), **PROMPTS))


def test_memory_store_rebound_to_other_model_not_stale(model, model_seed1, enc, enc1):
    store = EmbeddingStore()
    a = StackPredictor(model, blobs(), axes="ZYX", store=store, encoder=enc)
    emb_a = np.array(a.get_embedding(0))
    b = StackPredictor(model_seed1, blobs(), axes="ZYX", store=store, encoder=enc1)
    emb_b = b.get_embedding(0)
    assert not np.allclose(emb_a, emb_b)
    # the same encoder on the same batch shape (1) in this process: bit identical
    np.testing.assert_array_equal(emb_b, enc1.encode(prepared(b, 0)[None])[0])


def test_channel_modes_need_matching_model(model, enc):
    two = np.stack([blobs(seed=s) for s in range(2)], axis=-1)  # ZYXC
    with pytest.raises(ValueError, match=r"'adapt' gives 2 channel.*in_channels=3.*in_channels=2"):
        StackPredictor(model, two, axes="ZYXC", channels=ChannelSpec("adapt"), encoder=enc)
    with pytest.raises(ValueError, match="channel index 4 is out of range"):
        StackPredictor(model, two, axes="ZYXC", channels=ChannelSpec("single", 4), encoder=enc)
    with pytest.raises(ValueError, match="encoder: must be a ModelEncoder of this model"):
        StackPredictor(small_model(0), two, axes="ZYXC", encoder=enc)
    adapted = small_model(0, in_channels=2)
    sp = StackPredictor(adapted, two, axes="ZYXC", channels=ChannelSpec("adapt"))
    assert sp.get_embedding(1).shape == (8, 8, 32)
    with pytest.raises(ValueError, match=r"'single' gives 3 channel.*in_channels=2"):
        StackPredictor(adapted, two, axes="ZYXC", channels=ChannelSpec("single", 0))


def test_errors_and_batched_precompute(model):
    sp = StackPredictor(model, blobs(), axes="ZYX")
    with pytest.raises(RuntimeError, match="set_slice"):
        sp(**PROMPTS)
    with pytest.raises(SliceIndexError):
        sp.set_slice(N)
    res = sp.precompute(batch_size=3)
    assert (res.computed, res.reused) == (N, 0) and sp.encoder.trace_count() == 1
    one = StackPredictor(model, blobs(), axes="ZYX", encoder=sp.encoder)
    one.encoder.batch_size = 1
    for i in range(N):  # batches of 3 and 1 vs one at a time: float rounding only
        np.testing.assert_allclose(sp.get_embedding(i), one.get_embedding(i), atol=1e-5)
    assert sp.encoder.trace_count() == 1  # no retracing for other batch sizes
    assert len(sp) == N and "StackPredictor" in repr(sp)


def test_image_encoder_traced_once_per_model():
    # A fresh model: StackPredictor (through its ModelEncoder) and SAMPredictor.set_image
    # share the model's one traced image encoder (predict.predictor.model_graphs), itself
    # shared with earlier models of the same structure in this process (predict.shared).
    fresh = small_model(2)
    embed = model_graphs(fresh).embed
    assert embed.experimental_get_tracing_count() in (0, 1)
    sp = StackPredictor(fresh, blobs(), axes="ZYX", normalization=FIXED)
    sp.set_slice(0)
    assert embed.experimental_get_tracing_count() == 1
    p = SAMPredictor(fresh)
    p.set_image(prepared(sp, 1))
    sp.set_slice(1)  # embedded alone, as set_image did: batch shape 1 both times
    ModelEncoder(fresh).encode(prepared(sp, 2)[None])
    sp.precompute(batch_size=2)  # other batch shapes: the same trace (dynamic batch)
    assert embed.experimental_get_tracing_count() == 1
    assert sp.encoder.trace_count() == 1
    # the same traced function on the same batch shape in one process: bit identical (a
    # batch of 2 may round differently on some CPUs, see test_round_trip_from_disk...)
    np.testing.assert_array_equal(sp.get_embedding(1)[None], p.embedding.numpy())


def test_release_slice_forgets_the_current_slice(model, enc):
    sp = StackPredictor(model, blobs(), axes="ZYX", normalization=FIXED, encoder=enc)
    before = sp.predict(1, **PROMPTS)
    sp.release_slice()
    assert sp.index is None
    with pytest.raises(RuntimeError, match="set_slice"):
        sp(**PROMPTS)
    sp.predictor.set_embedding(sp.get_embedding(3), sp.view.slice_shape)  # used directly
    assert_same(sp.predict(1, **PROMPTS), before)  # the slice's own embedding again
