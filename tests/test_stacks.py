"""Tests of StackView (numpy, dask, zarr, TIFF) and ChannelSpec."""

import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam.stacks import SliceIndexError, StackView
from napari_sam.stacks.channels import ChannelSpec


def _data(shape, dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(dtype)


def test_numpy_zyx_slices():
    a = _data((4, 10, 12))
    v = StackView(a, "ZYX")
    assert len(v) == 4
    assert v.slice_shape == (10, 12)
    assert v.n_channels == 1
    assert v.slice_indices == [(0,), (1,), (2,), (3,)]
    s = v.get_slice(2)
    assert s.shape == (10, 12, 1) and s.dtype == np.uint16
    np.testing.assert_array_equal(s[..., 0], a[2])
    np.testing.assert_array_equal(v.get_slice(-1)[..., 0], a[3])
    assert [x[0, 0, 0] for x in v] == list(a[:, 0, 0])


def test_tzcyx_order_and_transpose():
    a = _data((2, 3, 4, 5, 6))
    v = StackView(a, "TZCYX")
    assert len(v) == 6 and v.n_channels == 4 and v.slice_shape == (5, 6)
    assert v.slice_axes == "TZ" and v.channel_axis == "C"
    assert v.slice_indices == [(t, z) for t in range(2) for z in range(3)]
    for k, (t, z) in enumerate(v.slice_indices):
        want = np.moveaxis(a[t, z], 0, -1)
        np.testing.assert_array_equal(v.get_slice(k), want)
        np.testing.assert_array_equal(v.get_slice((t, z)), want)
        assert v.flat_index((t, z)) == k


@pytest.mark.parametrize(
    ("axes", "shape"), [("CZYX", (3, 2, 5, 6)), ("ZYXC", (2, 5, 6, 3)), ("XYZC", (6, 5, 2, 3))]
)
def test_channel_axis_anywhere(axes, shape):
    a = _data(shape)
    v = StackView(a, axes)
    for z in range(2):
        idx = tuple(z if ax == "Z" else slice(None) for ax in axes)
        kept = [ax for ax in axes if ax != "Z"]
        want = np.transpose(a[idx], [kept.index(c) for c in "YXC"])
        np.testing.assert_array_equal(v.get_slice(z), want)


def test_single_rgb_image():
    a = _data((7, 8, 3), np.uint8)
    v = StackView(a, "YXS")
    assert len(v) == 1 and v.slice_indices == [()] and v.n_channels == 3
    np.testing.assert_array_equal(v.get_slice(0), a)
    np.testing.assert_array_equal(v.get_slice(()), a)


def test_dask_and_zarr_match_numpy(tmp_path):
    da = pytest.importorskip("dask.array")
    a = _data((3, 2, 9, 11))
    ref = StackView(a, "ZCYX")
    z = zarr.create_array(
        store=str(tmp_path / "a.zarr"), shape=a.shape, dtype=a.dtype, chunks=(1, 1, 9, 11)
    )
    z[:] = a
    for data in (da.from_array(a, chunks=(1, 1, 5, 5)), z, tmp_path / "a.zarr"):
        v = StackView(data, "ZCYX")
        assert len(v) == 3 and v.n_channels == 2
        for i in range(3):
            s = v.get_slice(i)
            assert type(s) is np.ndarray and s.dtype == a.dtype
            np.testing.assert_array_equal(s, ref.get_slice(i))


def test_tiff_axes_from_file_and_lazy(tmp_path):
    a = _data((24, 2, 256, 256))
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, a, metadata={"axes": "ZCYX"})
    slice_bytes = a[0].nbytes  # 256 KiB; the file is 24 times that
    tracemalloc.start()
    try:
        with StackView(path) as v:
            assert v.axes == "ZCYX" and len(v) == 24 and v.n_channels == 2
            s = v.get_slice(17)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(s, np.moveaxis(a[17], 0, -1))
    assert peak < 4 * slice_bytes, f"read {peak} bytes for one slice of {slice_bytes}"


@pytest.mark.parametrize(("metadata", "letter"), [({}, "Q"), (None, "I")])
def test_tiff_unknown_axes_needs_explicit_axes(tmp_path, metadata, letter):
    a = _data((5, 16, 16))
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, a, metadata=metadata)  # no axes: tifffile reports Q or I
    with pytest.raises(ValueError, match=rf"axes: .*\['{letter}'\].*--axes"):
        StackView(path)
    with pytest.raises(ValueError, match="axes: 'YX' has 2 letters"):
        StackView(path, axes="YX")
    with StackView(path, axes="TYX") as v:
        assert v.slice_axes == "T"
        np.testing.assert_array_equal(v.get_slice(1)[..., 0], a[1])


@pytest.mark.parametrize(
    ("shape", "axes", "match"),
    [
        ((2, 3, 4), "YX", r"axes: 'YX' has 2 letters but the data has 3"),
        ((2, 3, 4), "ZZX", r"repeated"),
        ((2, 3, 4), "ZYW", r"unknown letter"),
        ((2, 3, 4), "ZQX", r"unknown letter"),
        ((2, 3, 4), "TZX", r"no Y axis"),
        ((2, 3, 4, 3), "CYXS", r"two channel axes"),
        ((0, 3, 4), "ZYX", r"axis Z has size zero"),
    ],
)
def test_axes_errors(shape, axes, match):
    with pytest.raises(ValueError, match=match):
        StackView(np.zeros(shape), axes)


def test_missing_axes_and_bad_data():
    with pytest.raises(ValueError, match="axes: required"):
        StackView(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="data: expected an array"):
        StackView([[1, 2]], "YX")


def test_slice_index_errors():
    v = StackView(_data((2, 3, 4, 5)), "TZYX")
    for bad in (6, -7, (2, 0), (0, 3), (0,)):
        with pytest.raises(SliceIndexError, match="index"):
            v.get_slice(bad)
    assert issubclass(SliceIndexError, ValueError) and issubclass(SliceIndexError, IndexError)


# --- channels -------------------------------------------------------------------------------


def test_channel_modes():
    img = _data((4, 5, 4))
    np.testing.assert_array_equal(ChannelSpec("rgb", (2, 0, 3)).apply(img), img[..., [2, 0, 3]])
    one = ChannelSpec("rgb", (1,)).apply(img)
    np.testing.assert_array_equal(one, np.repeat(img[..., 1:2], 3, axis=-1))
    two = ChannelSpec("rgb", (3, 1)).apply(img)
    np.testing.assert_array_equal(two[..., :2], img[..., [3, 1]])
    assert not two[..., 2].any() and two.dtype == img.dtype
    np.testing.assert_array_equal(ChannelSpec("single", 2).apply(img), img[..., [2, 2, 2]])
    np.testing.assert_array_equal(ChannelSpec("adapt").apply(img), img)
    assert (
        ChannelSpec("adapt").out_channels(4) == 4 and ChannelSpec("single", 0).out_channels(4) == 3
    )
    np.testing.assert_array_equal(ChannelSpec("rgb").apply(img), img[..., :3])


def test_channel_defaults_and_signature():
    assert ChannelSpec.default_for(1) == ChannelSpec("single", (0,))
    assert ChannelSpec.default_for(2) == ChannelSpec("rgb", (0, 1))
    assert ChannelSpec.default_for(3).signature() == "rgb:0,1,2"
    with pytest.raises(ValueError, match="4 channels"):
        ChannelSpec.default_for(4)
    sigs = {
        ChannelSpec("rgb", (0, 1, 2)).signature(),
        ChannelSpec("rgb", (2, 1, 0)).signature(),
        ChannelSpec("single", 0).signature(),
        ChannelSpec("adapt").signature(),
    }
    assert len(sigs) == 4
    assert ChannelSpec("rgb", [0, 1]).signature() == ChannelSpec("rgb", (0, 1)).signature()
    assert ChannelSpec("rgb").resolve(2).signature() == "rgb:0,1"


def test_channel_errors():
    img = _data((4, 5, 2))
    with pytest.raises(ValueError, match=r"channel index 2 is out of range.*has 2 channel"):
        ChannelSpec("rgb", (0, 2)).apply(img)
    with pytest.raises(ValueError, match="mode"):
        ChannelSpec("grey")
    with pytest.raises(ValueError, match="indices"):
        ChannelSpec("rgb", (0, 1, 2, 3))
    with pytest.raises(ValueError, match="indices"):
        ChannelSpec("single", (0, 1))
    with pytest.raises(ValueError, match="indices"):
        ChannelSpec("adapt", (0,))
