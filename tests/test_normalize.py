"""Tests of stack-wide, per-channel intensity normalisation."""

import numpy as np
import pytest

from napari_sam.normalize import Normalization, sample_pixels
from napari_sam.stacks import StackView


def _u8_stack(seed=0, shape=(6, 40, 48, 3)):
    rng = np.random.default_rng(seed)
    # a smooth-ish image with a full 0..255 range plus noise
    y, x = np.mgrid[: shape[1], : shape[2]]
    base = (np.sin(x / 7.0)[None, :, :, None] * np.cos(y / 5.0)[None, :, :, None] + 1) * 120
    noise = rng.normal(0, 10, shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _all(fitted, view):
    return np.stack([fitted.apply(view.get_slice(i)) for i in range(len(view))])


def test_uint8_default_is_identity():
    a = _u8_stack()
    v = StackView(a, "ZYXS")
    fitted = Normalization().fit(v)
    assert fitted.mode == "dtype"
    out = _all(fitted, v)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a.astype(np.float32))


@pytest.mark.parametrize("mode", ["auto", "percentile", "minmax", "dtype"])
def test_uint8_uint16_float_equivalent(mode):
    a = _u8_stack(seed=1)
    views = [
        StackView(a, "ZYXS"),
        StackView(a.astype(np.uint16) * 257, "ZYXS"),
        StackView(a.astype(np.float32) / 255, "ZYXS"),
    ]
    outs = [_all(Normalization(mode).fit(v), v) for v in views]
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-3)
    np.testing.assert_allclose(outs[2], outs[0], atol=1e-3)
    if mode != "dtype":  # the stretch is data-driven: same under scaling, not just for 8-bit data
        noisy = a.astype(np.uint16) * 3 + 7
        pair = [StackView(noisy, "ZYXS"), StackView(noisy * 11, "ZYXS")]
        o = [_all(Normalization("percentile").fit(v), v) for v in pair]
        np.testing.assert_allclose(o[1], o[0], atol=1e-3)


def test_uint16_microscopy_is_stretched():
    rng = np.random.default_rng(3)
    a = rng.integers(100, 3001, (5, 64, 64)).astype(np.uint16)
    v = StackView(a, "ZYX")
    fitted = Normalization().fit(v)
    assert fitted.mode == "percentile"
    out = _all(fitted, v)
    assert out.min() == 0 and out.max() == 255
    assert 100 < out.mean() < 155
    # the dtype range would leave it nearly black
    assert _all(Normalization("dtype").fit(v), v).max() < 12
    lo, hi = np.percentile(a, [0.1, 99.9])
    assert fitted.lo[0] == pytest.approx(lo, rel=0.01)
    assert fitted.hi[0] == pytest.approx(hi, rel=0.01)


def test_per_channel_ranges():
    rng = np.random.default_rng(4)
    a = np.stack([rng.uniform(0, 10, (3, 20, 20)), rng.uniform(1000, 5000, (3, 20, 20))], 1)
    v = StackView(a.astype(np.float32), "ZCYX")
    fitted = Normalization("minmax").fit(v)
    assert fitted.lo[0] == pytest.approx(a[:, 0].min(), rel=1e-6)
    assert fitted.hi[1] == pytest.approx(a[:, 1].max(), rel=1e-6)
    out = _all(fitted, v)
    for c in range(2):
        assert out[..., c].min() == pytest.approx(0, abs=1e-3)
        assert out[..., c].max() == pytest.approx(255, abs=1e-3)


def test_sampling_is_bounded_and_seeded():
    a = np.random.default_rng(5).integers(0, 60000, (100, 50, 50)).astype(np.uint16)
    base = StackView(a, "ZYX")

    class Counting:
        def __init__(self):
            self.read = []

        def __len__(self):
            return len(base)

        def __getattr__(self, name):
            return getattr(base, name)

        def get_slice(self, i):
            self.read.append(i)
            return base.get_slice(i)

    c = Counting()
    s = sample_pixels(c, max_slices=8, max_samples=4000)
    assert len(set(c.read)) == 8 and c.read[0] == 0 and c.read[-1] == 99
    assert s.shape == (4000, 1)
    np.testing.assert_array_equal(s, sample_pixels(base, max_slices=8, max_samples=4000))
    assert not np.array_equal(s, sample_pixels(base, max_slices=8, max_samples=4000, seed=1))
    n1 = Normalization("percentile", max_slices=8, max_samples=4000).fit(base)
    n2 = Normalization("percentile", max_slices=8, max_samples=4000).fit(base)
    assert n1.signature() == n2.signature()


def test_fixed_none_and_constant():
    a = np.array([[[0, 100, 200, 300]]], dtype=np.uint16).reshape(1, 1, 4)
    v = StackView(a, "ZYX")
    out = Normalization.fixed(100, 200).fit(v).apply(v.get_slice(0))
    np.testing.assert_allclose(out[0, :, 0], [0, 0, 255, 255])
    out = Normalization("none").fit(v).apply(v.get_slice(0))
    np.testing.assert_allclose(out[0, :, 0], [0, 100, 200, 255])
    flat = StackView(np.full((2, 4, 4), 7, np.uint16), "ZYX")
    out = Normalization("percentile").fit(flat).apply(flat.get_slice(0))
    assert np.isfinite(out).all() and not out.any()
    two = StackView(np.zeros((4, 4, 2), np.uint16), "YXC")
    f = Normalization.fixed([0, 10], [100, 20]).fit(two)
    assert f.lo == (0.0, 10.0) and f.hi == (100.0, 20.0)
    with pytest.raises(ValueError, match="vmin, vmax"):
        Normalization.fixed([0, 1, 2], [3, 4, 5]).fit(two)


def test_dtype_mode_scales():
    a16 = np.array([[0, 257, 65535]], dtype=np.uint16)
    f16 = Normalization("dtype").fit(StackView(a16, "YX"))
    np.testing.assert_array_equal(f16.apply(a16[..., None])[0, :, 0], [0, 1, 255])
    af = np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32)
    ff = Normalization("dtype").fit(StackView(af, "YX"))
    np.testing.assert_allclose(ff.apply(af[..., None])[0, :, 0], [0, 127.5, 255, 255], rtol=1e-6)


def test_signature_records_mode_parameters_and_fit():
    a = np.random.default_rng(6).integers(0, 4000, (3, 16, 16)).astype(np.uint16)
    v = StackView(a, "ZYX")
    sigs = {
        Normalization().fit(v).signature(),
        Normalization(low=1, high=99).fit(v).signature(),
        Normalization("minmax").fit(v).signature(),
        Normalization.fixed(0, 4000).fit(v).signature(),
        Normalization().fit(StackView(a // 2, "ZYX")).signature(),
    }
    assert len(sigs) == 5
    assert "low=1" in Normalization(low=1, high=99).fit(v).signature()


def test_errors():
    with pytest.raises(ValueError, match="mode"):
        Normalization("zscore")
    with pytest.raises(ValueError, match="low, high"):
        Normalization(low=50, high=10)
    with pytest.raises(ValueError, match="vmin, vmax"):
        Normalization("fixed")
    f = Normalization().fit(StackView(np.zeros((4, 4), np.uint8), "YX"))
    with pytest.raises(ValueError, match=r"image: expected a \(Y, X, 1\)"):
        f.apply(np.zeros((4, 4, 3), np.uint8))
