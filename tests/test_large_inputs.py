"""Images larger than memory (issue [scale]): OME-Zarr, zarr and dask inputs read region by
region; the input check and the normalisation never read a large slice whole; the large-image
benchmark's quick mode (memmap, peak RSS, SIGKILL and resume) as a smoke test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_sam.batch.errors import InputError
from napari_sam.batch.runtime import open_input
from napari_sam.stacks.normalize import Normalization
from napari_sam.stacks.tiling import TileView, Tiling
from napari_sam.stacks.view import StackView

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_large_image.py"
OME_AXES = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"},
            {"name": "z", "type": "space"}, {"name": "y", "type": "space"},
            {"name": "x", "type": "space"}]  # fmt: skip


class Recording:
    """An array that records the index of every read (numpy indexing, nothing else)."""

    def __init__(self, data):
        self.data, self.keys = data, []
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        self.keys.append(key)
        return np.asarray(self.data[key])

    def extents(self) -> list[tuple[int, ...]]:
        """The size of each read region along every axis."""
        out = []
        for key in self.keys:
            key = key if isinstance(key, tuple) else (key,)
            key = key + (slice(None),) * (self.ndim - len(key))
            out.append(tuple(len(range(*k.indices(n))) if isinstance(k, slice) else 1
                             for k, n in zip(key, self.shape, strict=True)))  # fmt: skip
        return out


def nuclei(shape=(700, 600)):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = rng.normal(300, 20, shape)
    for cy, cx in rng.uniform((20, 20), (shape[0] - 20, shape[1] - 20), (60, 2)):
        img += 2000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))
    return img.clip(0, 65535).astype(np.uint16)


def write_ome_zarr(path: Path, data: np.ndarray, zarr_format: int = 3, axes=OME_AXES,
                   version: str | None = None):  # fmt: skip
    """An OME-Zarr image: level 0 at "0", a 2x downsampled level at "1"."""
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    down = data[..., ::2, ::2]
    for name, level in (("0", data), ("1", down)):
        arr = root.create_array(name, shape=level.shape, dtype=level.dtype,
                                chunks=level.shape[:-2] + (64, 64))  # fmt: skip
        arr[...] = level
    ms = [{"version": version or "0.4", "axes": axes,
           "datasets": [{"path": "0"}, {"path": "1"}]}]  # fmt: skip
    if version == "0.5":
        root.attrs["ome"] = {"version": "0.5", "multiscales": ms}
    else:
        root.attrs["multiscales"] = ms
    return root


# -- OME-Zarr ---------------------------------------------------------------------------------


@pytest.mark.parametrize("zarr_format,version", [(3, "0.5"), (3, "0.4"), (2, "0.4")])
def test_ome_zarr_opens_level_0_lazily_with_its_axes(tmp_path, zarr_format, version):
    data = np.arange(3 * 4 * 128 * 96, dtype=np.uint16).reshape(1, 3, 4, 128, 96)
    path = tmp_path / "image.ome.zarr"
    write_ome_zarr(path, data, zarr_format, version=version)
    view = StackView(path)
    assert view.axes == "TCZYX" and view.shape == data.shape and view.n_channels == 3
    assert len(view) == 4 and view.slice_shape == (128, 96)
    region = view.get_region((0, 2), slice(10, 74), slice(5, 69))
    np.testing.assert_array_equal(region, np.moveaxis(data[0, :, 2, 10:74, 5:69], 0, -1))
    # the input check of the command line takes it (a v2 group has .zgroup, no .zarray)
    with open_input(path, None) as checked:
        assert checked.axes == "TCZYX" and checked.shape == data.shape


def test_ome_zarr_axes_can_be_given_and_odd_axes_ask_for_them(tmp_path):
    data = nuclei((64, 80))[None]
    axes = [{"name": "angle", "type": "space"}, {"name": "y"}, {"name": "x"}]
    path = tmp_path / "odd.ome.zarr"
    write_ome_zarr(path, data, axes=axes)
    with pytest.raises(ValueError, match=r"^axes: cannot map the OME-Zarr axes \['angle'"):
        StackView(path)
    with pytest.raises(InputError, match="--axes"):
        open_input(path, None)
    assert StackView(path, "ZYX").stack_shape == (1,)
    names = tmp_path / "names.ome.zarr"  # OME-Zarr 0.3: axes as plain names
    write_ome_zarr(names, data, axes=["z", "y", "x"], version="0.3")
    assert StackView(names).axes == "ZYX"


def test_plain_zarr_group_is_refused_in_one_line(tmp_path):
    path = tmp_path / "group.zarr"
    zarr.open_group(str(path), mode="w").create_array("a", shape=(8, 8), dtype="u1")
    with pytest.raises(ValueError, match="^data: 'group.zarr' is a zarr group without"):
        StackView(path)
    with pytest.raises(InputError, match="INPUT: .*zarr group without OME-Zarr"):
        open_input(path, None)


# -- region reads: TileView over numpy, dask and zarr; the input check; the normalisation ----


def _sources(data):
    """Recording numpy and zarr arrays, and a dask array over a recording numpy array."""
    import dask.array as da

    z = zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, dtype=data.dtype,
                          chunks=(128, 128))  # fmt: skip
    z[...] = data
    under_dask = Recording(data)
    return {
        "numpy": (Recording(data), None),
        "zarr": (Recording(z), None),
        "dask": (da.from_array(under_dask, chunks=(128, 128), asarray=True), under_dask),
    }


@pytest.mark.parametrize("kind", ["numpy", "zarr", "dask"])
def test_tiles_are_read_one_region_at_a_time(kind):
    data = nuclei()
    source, rec = _sources(data)[kind]
    rec = rec or source
    tiling = Tiling(data.shape, 256, 32)
    view = StackView(source, "YX")
    tiles = TileView(view, tiling, pad_value=0)
    for t in range(len(tiles)):
        y0, y1, x0, x1 = tiling.window(t)
        np.testing.assert_array_equal(tiles.get_slice(t)[..., 0], data[y0:y1, x0:x1])
    sizes = [e for e in rec.extents() if np.prod(e) > 0]
    assert sizes and all(h <= 256 and w <= 256 for h, w in sizes), sizes


@pytest.fixture(scope="module")
def tiny_model():
    from napari_sam import create_model

    return create_model("sam_tiny_nuclei", pretrained=True)


@pytest.mark.parametrize("kind", ["zarr", "dask"])
def test_tiled_predictor_reads_only_regions(tiny_model, kind):
    from napari_sam.stacks.tiled_predictor import TiledPredictor

    data = nuclei()
    source, rec = _sources(data)[kind]
    rec = rec or source
    tiling = Tiling(data.shape, 256, 32)
    norm = Normalization.fixed(0, 2500)  # fitted without reading pixels
    tp = TiledPredictor(tiny_model, source, tiling, normalization=norm, axes="YX")
    res = tp.precompute()
    assert res.computed == len(tiling) == 12
    masks, scores, _ = tp.predict(0, points=np.array([[300, 350]]), labels=np.array([1]))
    assert masks.shape[-2:] == data.shape
    sizes = [e for e in rec.extents() if np.prod(e) > 0]
    assert sizes and all(h * w < data.size for h, w in sizes)  # never the whole slice
    assert max(h for h, _ in sizes) <= 256 * 2 and max(w for _, w in sizes) <= 256 * 2


def test_normalisation_of_a_large_slice_reads_blocks():
    big = (np.arange(4200 * 4100, dtype=np.uint32).reshape(4200, 4100) % 3001).astype(np.uint16)
    rec = Recording(big)
    fitted = Normalization().fit(StackView(rec, "YX"))
    sizes = rec.extents()
    assert sizes and sum(h * w for h, w in sizes) < big.size // 4
    assert 0 <= fitted.lo[0] < fitted.hi[0] <= 3000


def test_input_check_reads_bands_of_a_large_slice(tmp_path, monkeypatch):
    data = np.zeros((2, 2100, 2100), np.uint8)  # 4.4 M pixels a slice: over the limit
    path = tmp_path / "big.zarr"
    arr = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=(1, 512, 512))
    arr[...] = data
    reads = []
    real = StackView.get_region

    def get_region(self, index, rows=slice(None), cols=slice(None)):
        out = real(self, index, rows, cols)
        reads.append((self.flat_index(index), out.shape[:2]))
        return out

    monkeypatch.setattr(StackView, "get_region", get_region)
    with open_input(path, "ZYX"):
        pass
    assert [i for i, _ in reads] == [0, 1]
    assert all(h * w <= 1 << 22 and h < 2100 for _, (h, w) in reads), reads
    small = tmp_path / "small.zarr"
    zarr.create_array(str(small), shape=(3, 300, 200), dtype="u1", chunks=(1, 64, 64))
    reads.clear()
    with open_input(small, "ZYX"):
        pass
    assert sorted(reads) == [(0, (300, 200)), (2, (300, 200))]  # small slices: read whole


# -- the benchmark ----------------------------------------------------------------------------


def test_bench_large_image_quick(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--workdir", str(tmp_path / "w"),
         "--json", str(out), "--kill-after", "20"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    fig = json.loads(out.read_text())
    run, resume = fig["run"], fig["resume"]
    total = run["tiles_total"]
    assert total == run["computed"] > 30 and 0 < run["peak_hwm_gib"] <= 2
    assert resume["ok"] and resume["rerun"]["reused"] >= resume["records_before"] >= 20
    assert resume["rerun"]["computed"] + resume["rerun"]["reused"] == total
    assert not (tmp_path / "w").exists()  # its temporary files are gone
    assert "OK" in done.stdout.splitlines()[-1]
