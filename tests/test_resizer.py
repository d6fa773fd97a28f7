"""Tests for napari_sam.predict.resizer.ImageResizer, against Meta's ResizeLongestSide and Sam."""

from __future__ import annotations

import types

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from napari_sam.predict.resizer import ImageResizer, resize_bilinear

from reference import import_segment_anything

import_segment_anything()  # installs the torchvision shim if needed
from segment_anything.modeling.sam import Sam  # noqa: E402
from segment_anything.utils.transforms import ResizeLongestSide  # noqa: E402

# torch's bilinear kernels compute the sample position with a fused multiply-add in their
# AVX2/AVX512 builds, which resize_bilinear reproduces; the DEFAULT (no FMA) build differs by
# an ulp of the position, i.e. up to ~3e-4 on logits of +-30.
ATOL = 1e-3 if torch.backends.cpu.get_cpu_capability() == "DEFAULT" else 1e-5

SIZES = [(480, 640), (333, 517), (1500, 1100), (100, 80)]  # the last one upscales


def _rng(seed=0):
    return np.random.default_rng(seed)


def _meta_postprocess(logits: np.ndarray, input_size, original_size) -> np.ndarray:
    """Meta's Sam.postprocess_masks on logits already at the (square) encoder size."""
    fake_sam = types.SimpleNamespace(image_encoder=types.SimpleNamespace(img_size=logits.shape[-1]))
    out = Sam.postprocess_masks(fake_sam, torch.from_numpy(logits), input_size, original_size)
    return out.numpy()


# --- sizes ----------------------------------------------------------------------------------


def test_rescaled_size_and_scale_match_meta():
    rng = _rng(1)
    sizes = [tuple(int(v) for v in s) for s in rng.integers(1, 5000, (500, 2))]
    sizes += [(1024, 1024), (1, 1), (3, 1000), (1023, 1025), (2049, 4097), *SIZES]
    sizes += [(2048, 1001), (1001, 2048), (4096, 1003), (514, 1028)]  # x.5 ties: round half up
    for target in (1024, 512, 257):
        for h0, w0 in sizes:
            meta = ResizeLongestSide.get_preprocess_shape(h0, w0, target)
            if min(meta) == 0:
                continue  # degenerate in Meta; clamped to 1 here
            r = ImageResizer((h0, w0), (target, target))
            assert r.rescaled_size == meta, (h0, w0, target)
            assert r.scale == target * 1.0 / max(h0, w0)
            assert max(r.rescaled_size) == target


def test_attributes_and_degenerate_size():
    r = ImageResizer([480, 640], np.array([1024, 1024]))
    assert (r.src_size, r.dst_size, r.rescaled_size) == ((480, 640), (1024, 1024), (768, 1024))
    assert r.scale == 1.6 and isinstance(r.rescaled_size[0], int)
    assert ImageResizer((1, 5000), (1024, 1024)).rescaled_size == (1, 1024)


def test_non_square_dst():
    r = ImageResizer((100, 300), (512, 768))
    assert r.scale == min(512 / 100, 768 / 300)
    assert r.rescaled_size == (256, 768)
    r = ImageResizer((400, 100), (512, 768))
    assert r.rescaled_size == (512, 128)
    for h0, w0 in [(333, 517), (517, 333), (50, 4000), (4000, 50)]:
        r = ImageResizer((h0, w0), (300, 700))
        h, w = r.rescaled_size
        assert h <= 300 and w <= 700 and (h == 300 or w == 700)
        assert (h, w) == (int(h0 * r.scale + 0.5), int(w0 * r.scale + 0.5))


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_scale_image_uint8_rgb_bit_exact_vs_meta(size):
    img = _rng(2).integers(0, 256, (*size, 3), dtype=np.uint8)
    ours = ImageResizer(size, (1024, 1024)).scale_image(img)
    meta = ResizeLongestSide(1024).apply_image(img)
    assert ours.dtype == np.uint8 and ours.shape == meta.shape
    np.testing.assert_array_equal(ours, meta)


def test_scale_image_per_channel_path_equals_rgb_path():
    img = _rng(3).integers(0, 256, (333, 517, 3), dtype=np.uint8)
    r = ImageResizer(img.shape[:2], (1024, 1024))
    planes = [r.scale_image(img[..., c : c + 1]) for c in range(3)]
    np.testing.assert_array_equal(np.concatenate(planes, -1), r.scale_image(img))
    # 4-channel uint8 goes through per-channel 'L' (no RGBA premultiplied alpha)
    rgba = np.concatenate([img, np.zeros_like(img[..., :1])], -1)
    np.testing.assert_array_equal(r.scale_image(rgba)[..., :3], r.scale_image(img))


def test_scale_image_batched_channels_first_and_tf_input():
    rng = _rng(4)
    batch = rng.integers(0, 256, (2, 100, 80, 3), dtype=np.uint8)
    r = ImageResizer((100, 80), (256, 256))
    out = r.scale_image(batch)
    assert out.shape == (2, 256, 205, 3)
    for n in range(2):
        np.testing.assert_array_equal(out[n], r.scale_image(batch[n]))
    cf = r.scale_image(np.moveaxis(batch, -1, 1), channels_last=False)
    np.testing.assert_array_equal(cf, np.moveaxis(out, -1, 1))
    np.testing.assert_array_equal(r.scale_image(tf.constant(batch)), out)
    masks = rng.random((4, 100, 80)).astype(np.float32)  # (C, H, W)
    out = r.scale_image(masks, channels_last=False)
    assert out.shape == (4, 256, 205) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.moveaxis(r.scale_image(masks.transpose(1, 2, 0)), -1, 0))


@pytest.mark.parametrize("channels", [1, 5])
@pytest.mark.parametrize("size", [(333, 517), (60, 90)])
def test_scale_image_float_matches_torch_antialiased_bilinear(channels, size):
    img = _rng(5).random((*size, channels)).astype(np.float32)
    r = ImageResizer(size, (256, 256))
    out = r.scale_image(img)
    assert out.dtype == np.float32 and out.shape == (*r.rescaled_size, channels)
    ref = F.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None],
        r.rescaled_size,
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0].permute(1, 2, 0)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-4)


@pytest.mark.parametrize("channels", [1, 5])
def test_scale_image_uint16_keeps_dtype_and_range(channels):
    img = _rng(6).integers(0, 65536, (333, 517, channels), dtype=np.uint16)
    r = ImageResizer(img.shape[:2], (256, 256))
    out = r.scale_image(img)
    assert out.dtype == np.uint16 and out.shape == (*r.rescaled_size, channels)
    as_float = r.scale_image(img.astype(np.float32))
    np.testing.assert_array_equal(out, np.clip(np.rint(as_float), 0, 65535).astype(np.uint16))
    assert out.max() > 255  # not squeezed through 8 bits
    const = np.full((333, 517, channels), 40000, np.uint16)
    np.testing.assert_array_equal(r.scale_image(const), 40000)
    back = r.unscale_image(out)
    assert back.shape == img.shape and back.dtype == np.uint16


def test_scale_image_bool_mask():
    mask = np.zeros((1, 100, 80), bool)
    mask[0, 20:60, 10:50] = True
    r = ImageResizer((100, 80), (200, 200))
    out = r.scale_image(mask, channels_last=False)
    assert out.dtype == np.bool_ and out.shape == (1, 200, 160)
    assert out[0, 50:110, 30:90].all() and not out[0, :30].any()


def test_unscale_image_and_scale_to_size():
    img = _rng(7).integers(0, 256, (333, 517, 3), dtype=np.uint8)
    r = ImageResizer(img.shape[:2], (1024, 1024))
    back = r.unscale_image(r.scale_image(img))
    assert back.shape == img.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - img).mean() < 40  # blurry but related, unlike noise (~85)
    with pytest.raises(ValueError, match="image"):
        r.unscale_image(img)
    out = ImageResizer.scale_to_size(img, (50, 300))
    assert out.shape == (50, 300, 3) and out.dtype == np.uint8
    out = ImageResizer.scale_to_size(np.moveaxis(img, -1, 0), (50, 300), channels_last=False)
    assert out.shape == (3, 50, 300)
    np.testing.assert_array_equal(ImageResizer.scale_to_size(img, (333, 517)), img)


def test_pad_image():
    rng = _rng(8)
    r = ImageResizer((333, 517), (1024, 1024))
    h, w = r.rescaled_size
    img = rng.integers(1, 256, (h, w, 3), dtype=np.uint8)
    out = r.pad_image(img)
    assert out.shape == (1024, 1024, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:h, :w], img)
    assert not out[h:].any() and not out[:, w:].any()
    batch = rng.random((2, 4, h, w)).astype(np.float32) + 1
    out = r.pad_image(batch, channels_last=False)
    assert out.shape == (2, 4, 1024, 1024) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., :h, :w], batch)
    assert not out[..., h:, :].any() and not out[..., w:].any()
    with pytest.raises(ValueError, match=r"image must have spatial size \(660, 1024\)"):
        r.pad_image(np.zeros((333, 517, 3), np.uint8))


def test_pad_only():
    r = ImageResizer((300, 200), (512, 512), pad_only=True)
    assert r.scale == 1.0 and r.rescaled_size == (300, 200)
    img = _rng(9).random((300, 200, 2)).astype(np.float32)
    np.testing.assert_array_equal(r.scale_image(img), img)
    assert r.pad_image(img).shape == (512, 512, 2)
    logits = _rng(10).standard_normal((1, 3, 512, 512)).astype(np.float32)
    np.testing.assert_array_equal(r.postprocess_mask(logits), logits[..., :300, :200])
    with pytest.raises(ValueError, match=r"src_size \(600, 200\).*dst_size \(512, 512\)"):
        ImageResizer((600, 200), (512, 512), pad_only=True)


# --- prompts --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_scale_points_and_boxes_match_meta(size):
    rng = _rng(11)
    r, meta = ImageResizer(size, (1024, 1024)), ResizeLongestSide(1024)
    for points in (rng.integers(0, 500, (7, 2)), rng.random((7, 2)) * 500, np.array([[3, 4]])):
        ours = r.scale_points(points)
        ref = meta.apply_coords(points, size)
        assert ours.dtype == ref.dtype == np.float64
        np.testing.assert_array_equal(ours, ref)
    points = rng.random((2, 3, 2)).astype(np.float32) * 500
    np.testing.assert_array_equal(r.scale_points(points), meta.apply_coords(points, size))
    np.testing.assert_array_equal(
        r.scale_points([10, 20]), meta.apply_coords(np.array([10, 20]), size)
    )
    boxes = rng.integers(0, 500, (5, 4))
    np.testing.assert_array_equal(r.scale_boxes(boxes), meta.apply_boxes(boxes, size))
    boxes3 = rng.random((2, 5, 4)) * 500
    ours = r.scale_boxes(boxes3)
    assert ours.shape == (2, 5, 4)
    np.testing.assert_array_equal(ours.reshape(-1, 4), meta.apply_boxes(boxes3, size))
    inp = np.array([[1.0, 2.0]])
    r.scale_points(inp)
    assert inp.tolist() == [[1.0, 2.0]]  # input untouched


# --- masks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [((300, 450), 256), ((450, 300), 256), ((60, 90), 256), ((90, 37), 128), ((480, 640), 1024)],
)
def test_postprocess_mask_matches_meta(src, dst):
    r = ImageResizer(src, (dst, dst))
    logits = (_rng(12).standard_normal((2, 3, dst, dst)) * 10).astype(np.float32)
    ours = r.postprocess_mask(logits)
    ref = _meta_postprocess(logits, r.rescaled_size, src)
    assert ours.shape == ref.shape == (2, 3, *src) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(r.postprocess_mask(tf.constant(logits[0])), ours[0])
    np.testing.assert_array_equal(r.postprocess_mask(logits[0, 0]), ours[0, 0])
    binary = r.postprocess_mask(logits, threshold=0.5)
    assert binary.dtype == np.bool_
    np.testing.assert_array_equal(binary, ours > 0.5)


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((2, 3, 171, 256), (300, 450)),  # up
        ((1, 1, 660, 1024), (333, 517)),  # down, one channel (torch's channels-last kernel)
        ((5, 64, 64), (1000, 999)),
        ((2, 1, 10, 300), (10, 17)),  # one axis unchanged
        ((7, 9), (3, 40)),
    ],
)
def test_resize_bilinear_matches_torch(shape, size):
    x = (_rng(13).standard_normal(shape) * 10).astype(np.float32)
    xt = torch.from_numpy(x).reshape(-1, 1, *shape[-2:])
    ref = F.interpolate(xt, size, mode="bilinear", align_corners=False).reshape(*shape[:-2], *size)
    ours = resize_bilinear(x, size)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=ATOL)
    if ATOL > 1e-5:
        return
    # tf.image.resize (two roundings for the position) is measurably further from torch
    tf_out = tf.image.resize(np.moveaxis(x.reshape(-1, *shape[-2:]), 0, -1), size).numpy()
    tf_err = np.abs(np.moveaxis(tf_out, -1, 0).reshape(ref.shape) - ref.numpy()).max()
    assert np.abs(ours - ref.numpy()).max() <= tf_err


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [(1024,), (0, 5), (-1, 5), (1.5, 3), "ab", (True, 3), None, 1024, (1, 2, 3)]
)
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="src_size must be two positive ints"):
        ImageResizer(bad, (1024, 1024))
    with pytest.raises(ValueError, match="dst_size must be two positive ints"):
        ImageResizer((10, 10), bad)
    with pytest.raises(ValueError, match="size must be two positive ints"):
        ImageResizer.scale_to_size(np.zeros((4, 4, 1)), bad)


def test_bad_inputs():
    r = ImageResizer((100, 80), (256, 256))
    with pytest.raises(ValueError, match=r"image must be 3-D or 4-D \(H, W, C\)"):
        r.scale_image(np.zeros((100, 80)))
    with pytest.raises(ValueError, match=r"image must be 3-D or 4-D \(C, H, W\)"):
        r.scale_image(np.zeros((1, 1, 1, 100, 80)), channels_last=False)
    with pytest.raises(ValueError, match=r"image must have spatial size \(100, 80\)"):
        r.scale_image(np.zeros((80, 100, 3)))
    with pytest.raises(ValueError, match=r"spatial size \(100, 80\)"):
        r.scale_image(np.zeros((100, 80, 3)), channels_last=False)
    with pytest.raises(TypeError, match="dtype"):
        r.scale_image(np.zeros((100, 80, 1), complex))
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., 2\)"):
        r.scale_points(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"boxes must have shape \(\.\.\., 4\)"):
        r.scale_boxes(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"mask must have shape .* dst_size \(256, 256\)"):
        r.postprocess_mask(np.zeros((1, 100, 80)))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., h, w\)"):
        resize_bilinear(np.zeros(5), (3, 3))
