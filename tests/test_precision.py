"""The opt-in bfloat16 image encoder (``create_model(..., dtype="bfloat16")``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam import SAMPredictor, create_model
from napari_sam.stacks.encoder import ModelEncoder

from small_configs import TINY


def _perturbed_pair():
    f32 = create_model("sam_vit_b", **TINY)
    rng = np.random.default_rng(0)
    for v in f32.weights:
        v.assign(np.asarray(v) + rng.normal(0, 0.05, v.shape).astype(np.float32))
    bf16 = create_model("sam_vit_b", dtype="bfloat16", **TINY)
    for a, b in zip(f32.weights, bf16.weights, strict=True):
        b.assign(a)
    return f32, bf16


def test_bfloat16_encoder_close_to_float32_and_decoder_stays_float32():
    from napari_sam.model.precision import bfloat16_runs

    if not bfloat16_runs():
        pytest.skip("this machine has no bfloat16 convolution kernel (see bfloat16_runs)")
    f32, bf16 = _perturbed_pair()
    assert (f32.encoder_dtype, bf16.encoder_dtype) == ("float32", "bfloat16")
    assert all(v.dtype == "float32" for v in bf16.weights)  # weights stay float32
    assert bf16.mask_decoder.dtype_policy.compute_dtype == "float32"
    image = np.random.default_rng(1).integers(0, 256, (60, 50, 3)).astype(np.uint8)
    p32, p16 = SAMPredictor(f32), SAMPredictor(bf16)
    p32.set_image(image)
    p16.set_image(image)
    assert p16.embedding.dtype == np.float32
    rel = np.abs(p16.embedding - p32.embedding).max() / np.abs(p32.embedding).max()
    assert 0 < rel < 0.05  # bfloat16 really ran (not identical), and is close
    pts = np.array([[20.0, 30.0], [40.0, 10.0]])
    m32, s32, l32 = p32(points=pts, labels=np.array([1, 0]))
    m16, s16, l16 = p16(points=pts, labels=np.array([1, 0]))
    assert l16.dtype == np.float32
    np.testing.assert_allclose(s16, s32, atol=0.05)
    assert (m16 == m32).mean() > 0.95


def test_dtype_is_part_of_the_encoder_signature_and_checked():
    f32, bf16 = _perturbed_pair()
    s32, s16 = ModelEncoder(f32).signature, ModelEncoder(bf16).signature
    assert s32 != s16 and "dtype=bfloat16" in s16 and "dtype=float32" in s32
    bf16.set_encoder_dtype("float32")
    assert ModelEncoder(bf16).signature == s32
    with pytest.raises(ValueError, match="dtype must be 'float32', 'bfloat16' or 'auto'"):
        create_model("sam_vit_b", dtype="float16", **TINY)


def test_blocked_global_attention_equals_the_full_one(monkeypatch):
    """Large grids compute global attention block by block (cache-sized); same result."""
    from napari_sam.model import image_encoder

    model, _ = _perturbed_pair()
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype(np.float32)
    full = model.image_encoder(x).numpy()
    assert image_encoder._query_block_rows(8, 8, 2) == 8  # small: not blocked by default
    assert image_encoder._query_block_rows(64, 64, 12) == 64  # sam_vit_b: not blocked
    assert image_encoder._query_block_rows(64, 64, 16) == 8  # sam_vit_h: 8 MiB blocks
    monkeypatch.setattr(image_encoder, "_BLOCKING_ABOVE", 0)
    monkeypatch.setattr(image_encoder, "_BLOCK_BYTES", 2 * 8 * 64 * 4)  # two rows per block
    assert image_encoder._query_block_rows(8, 8, 2) == 2
    blocked = model.image_encoder(x).numpy()
    np.testing.assert_allclose(blocked, full, rtol=1e-5, atol=1e-5)


def test_tf32_is_off_for_parity_on_gpus():
    import tensorflow as tf

    import napari_sam.model  # noqa: F401

    assert not tf.config.experimental.tensor_float_32_execution_enabled()


@pytest.mark.parametrize(
    ("flags", "speedup", "runs", "expected", "why"),
    [
        ({"avx2", "fma"}, 1.0, True, "float32", "no native bfloat16"),  # AVX2 only
        ({"avx512f", "avx512_bf16"}, 1.9, True, "bfloat16", "1.9 x faster"),
        ({"amx_bf16"}, 1.05, True, "float32", "only 1.05 x faster"),  # native, not faster
        ({"avx512_bf16"}, 1.9, False, "float32", "no bfloat16 kernels"),
    ],
)
def test_auto_dtype_is_bfloat16_only_where_native_and_faster(monkeypatch, flags, speedup, runs,
                                                             expected, why):  # fmt: skip
    """[first-use] 6: the detection mocked both ways (and the speed and kernel checks)."""
    from napari_sam.model import precision

    for f in (precision._detected_dtype, precision.bfloat16_speedup, precision.bfloat16_runs):
        f.cache_clear()
    monkeypatch.delenv(precision.ENV_VAR, raising=False)  # the detection itself
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(precision, "bfloat16_speedup", lambda: speedup)
    monkeypatch.setattr(precision, "bfloat16_runs", lambda: runs)
    try:
        dtype, reason = precision.auto_dtype()
        assert dtype == expected and why in reason, reason
        model = create_model("sam_vit_b", dtype="auto", **TINY)
        assert model.encoder_dtype == expected and model.dtype_reason == reason
        key = ModelEncoder(model).signature
        assert f"dtype={expected}" in key  # the embeddings of each dtype are kept apart
    finally:
        precision._detected_dtype.cache_clear()


def test_the_environment_decides_in_place_of_the_detection(monkeypatch):
    from napari_sam.model import precision

    monkeypatch.setattr(precision, "native_bfloat16", lambda: 1 / 0)  # never asked
    for value in ("bfloat16", "float32"):
        monkeypatch.setenv(precision.ENV_VAR, value)
        assert precision.auto_dtype() == (value, f"{value}: set by NAPARI_SAM_DTYPE")
    monkeypatch.setenv(precision.ENV_VAR, "float16")
    with pytest.raises(ValueError, match="^NAPARI_SAM_DTYPE: expected float32, bfloat16 or auto"):
        precision.auto_dtype()


def test_auto_dtype_here_matches_the_machine(monkeypatch):
    from napari_sam.model.precision import ENV_VAR, NATIVE_CPU_FLAGS, auto_dtype, cpu_flags

    monkeypatch.delenv(ENV_VAR, raising=False)
    dtype, reason = auto_dtype()
    if not any(f in cpu_flags() for f in NATIVE_CPU_FLAGS):
        assert dtype == "float32" and "no native bfloat16" in reason
    with pytest.raises(ValueError, match="'float32', 'bfloat16' or 'auto'"):
        create_model("sam_vit_b", dtype="float16", **TINY)
