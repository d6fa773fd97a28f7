"""Tests of stack-wide, per-channel intensity normalisation."""

import warnings

import numpy as np
import pytest

from napari_sam.stacks import StackView
from napari_sam.stacks.normalize import Normalization, sample_pixels


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


def _with_non_finite(a):
    """``a`` (float) with NaN, +Inf and -Inf pixels, and where they are."""
    b = a.astype(np.float32).copy()
    where = {np.nan: (0, 3, 4), np.inf: (1, 5, 6), -np.inf: (2, 7, 8)}
    for value, pos in where.items():
        b[pos] = value
    b[3, :2, :] = np.nan  # a few more, so the sample surely holds some
    return b, where


@pytest.mark.parametrize("mode", ["auto", "percentile", "minmax"])
def test_non_finite_pixels_are_masked_out_of_the_fit(mode):
    rng = np.random.default_rng(7)
    a = rng.uniform(100, 3000, (4, 24, 32)).astype(np.float32)
    b, where = _with_non_finite(a)
    v = StackView(b, "ZYX")
    fitted = Normalization(mode).fit(v)
    assert fitted.mode == ("minmax" if mode == "minmax" else "percentile")
    sample = sample_pixels(v)
    assert not np.isfinite(sample).all()  # the sample does hold non-finite values
    finite = sample[np.isfinite(sample[:, 0])]
    if mode == "minmax":
        want = finite.min(axis=0), finite.max(axis=0)
    else:
        want = np.percentile(finite, [0.1, 99.9], axis=0)
    assert fitted.lo == tuple(want[0]) and fitted.hi == tuple(want[1])
    assert all(np.isfinite(fitted.lo + fitted.hi))
    out = _all(fitted, v)[..., 0]
    assert np.isfinite(out).all()
    assert out[where[np.nan]] == 0 and out[3, :2].max() == 0  # NaN -> 0
    assert out[where[np.inf]] == 255 and out[where[-np.inf]] == 0  # clipped ends
    ok = np.isfinite(b)
    assert out[ok].min() == 0 and out[ok].max() == 255  # one +Inf does not flatten the rest
    assert 100 < out[ok].mean() < 155
    # finite data: bit for bit the plain statistics of the sample (signatures depend on them)
    clean = StackView(a, "ZYX")
    plain = sample_pixels(clean)
    lo, hi = (
        (plain.min(0), plain.max(0))
        if mode == "minmax"
        else np.percentile(plain, [0.1, 99.9], axis=0)
    )
    assert Normalization(mode).fit(clean).lo == tuple(lo)
    assert Normalization(mode).fit(clean).hi == tuple(hi)


def test_auto_8bit_check_ignores_non_finite_pixels():
    a = _u8_stack(seed=2)[..., 0].astype(np.float32) / 255
    b, where = _with_non_finite(a)
    v = StackView(b, "ZYX")
    fitted = Normalization().fit(v)
    assert fitted.mode == "dtype" and (fitted.lo, fitted.hi) == ((0.0,), (1.0,))
    out = _all(fitted, v)[..., 0]
    assert np.isfinite(out).all()
    assert (out[where[np.nan]], out[where[np.inf]], out[where[-np.inf]]) == (0, 255, 0)
    ok = np.isfinite(b)
    np.testing.assert_allclose(out[ok], np.round(a[ok] * 255), atol=1e-3)


@pytest.mark.parametrize("mode", ["auto", "percentile", "minmax"])
def test_channel_without_finite_values_is_refused(mode):
    a = np.random.default_rng(8).uniform(0, 1000, (2, 8, 8, 2)).astype(np.float32)
    a[..., 1] = np.nan
    a[0, 0, 0, 1] = np.inf
    with pytest.raises(ValueError, match=r"channel 1 has no finite value"):
        Normalization(mode).fit(StackView(a, "ZYXC"))


def test_apply_never_returns_nan():
    image = np.array([[[np.nan, 5.0], [np.inf, 5.0], [-np.inf, 5.0], [0.5, 5.0]]], np.float32)
    v = StackView(image, "YXC")
    for fitted in (
        Normalization("dtype").fit(v),
        Normalization("none").fit(v),
        Normalization.fixed([0, 5], [1, 5]).fit(v),  # channel 1 constant: all 0, infinities too
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no RuntimeWarning from inf * 0 or NaN
            out = fitted.apply(image)
        assert np.isfinite(out).all()
        assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255 and out[0, 2, 0] == 0
    assert not out[..., 1].any()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Normalization.fixed(-np.inf, np.inf),
        lambda: Normalization.fixed(0, np.nan),
        lambda: Normalization.fixed([0, 1], [np.inf, 2]),
        lambda: Normalization("fixed", vmin=(0.0,), vmax=(float("inf"),)),
        lambda: Normalization("fixed", vmin=float("nan"), vmax=1.0),
    ],
)
def test_fixed_range_must_be_finite(make):
    with pytest.raises(ValueError, match=r"vmin, vmax: expected finite values"):
        make()


@pytest.mark.parametrize("text", ["fixed:-inf,inf", "fixed:0,inf", "fixed:-inf,3"])
def test_cli_refuses_non_finite_fixed_range(text):
    from napari_sam.cli import CLIError, parse_normalization

    with pytest.raises(CLIError, match=r"expected finite values"):
        parse_normalization(text)
    assert parse_normalization("fixed:0,4095").fit(StackView(np.zeros((2, 2)), "YX")).hi == (
        4095.0,
    )


def test_the_background_level_is_the_lower_mode_and_pads_tiles():
    """[tiny-v2] Tiles reaching past a slice are padded with the image's background (the
    median below Otsu's threshold), not with the normalisation's low end: a black band beside
    a dim background read as objects to sam_tiny_nuclei's decoder."""
    rng = np.random.default_rng(3)
    a = rng.normal(1000, 30, (4, 64, 64))
    a[:, 20:40, 10:50] = rng.normal(5000, 300, (4, 20, 40))  # bright objects on 20 %
    v = StackView(a.astype(np.uint16), "ZYX")
    fitted = Normalization().fit(v)
    assert fitted.mode == "percentile"
    assert abs(fitted.background[0] - 1000) < 15 and fitted.lo[0] < 950
    assert fitted.pad_value == fitted.background
    assert Normalization().fit(StackView(np.full((2, 8, 8), 9, np.uint16), "ZYX")).background == (
        9.0,
    )  # a constant channel: its value
    fixed = Normalization.fixed(0, 4000).fit(v)  # nothing sampled: the low end, as before
    assert fixed.pad_value == fixed.lo
    f = (np.random.default_rng(0).integers(0, 256, (3, 32, 32)) / 255).astype(np.float32)
    f[0, :4] = np.nan  # 8-bit values in a float image, with NaN pixels: a finite background
    fitted = Normalization().fit(StackView(f, "ZYX"))
    assert fitted.mode == "dtype" and 0 < fitted.background[0] < 0.5
