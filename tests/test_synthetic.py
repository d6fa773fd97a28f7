"""Tests of the synthetic fluorescence-microscopy nuclei generator."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_sam.train.synthetic import (
    NucleiParams,
    generate_nuclei,
    make_nuclei_2d,
    make_nuclei_3d,
    make_sample_stack,
)

SMALL_3D = (16, 192, 192)


@pytest.fixture(scope="module")
def default_2d():
    return generate_nuclei(NucleiParams(), seed=11)


@pytest.fixture(scope="module")
def default_3d():
    return generate_nuclei(NucleiParams(shape=SMALL_3D), seed=5)


def _touching_pairs(labels):
    """Pairs of different labels that are face (4/6-) neighbours."""
    pairs = set()
    for ax in range(labels.ndim):
        a = np.moveaxis(labels, ax, 0)[:-1].ravel()
        b = np.moveaxis(labels, ax, 0)[1:].ravel()
        keep = (a > 0) & (b > 0) & (a != b)
        pairs |= {tuple(sorted(p)) for p in zip(a[keep].tolist(), b[keep].tolist(), strict=True)}
    return pairs


def test_determinism_2d_3d():
    im1, lab1 = make_nuclei_2d((128, 160), seed=3)
    im2, lab2 = make_nuclei_2d((128, 160), seed=3)
    im3, lab3 = make_nuclei_2d((128, 160), seed=4)
    np.testing.assert_array_equal(im1, im2)
    np.testing.assert_array_equal(lab1, lab2)
    assert not np.array_equal(im1, im3)
    assert not np.array_equal(lab1, lab3)
    a, la = make_nuclei_3d((8, 64, 64), seed=1)
    b, lb = make_nuclei_3d((8, 64, 64), seed=1)
    c, _ = make_nuclei_3d((8, 64, 64), seed=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)


def test_shapes_and_dtypes():
    im, lab = make_nuclei_2d((100, 140), seed=0)
    assert im.shape == lab.shape == (100, 140)
    assert im.dtype == np.uint16 and lab.dtype == np.int32
    im, lab = make_nuclei_2d((100, 140), seed=0, second_channel=True)
    assert im.shape == (2, 100, 140) and lab.shape == (100, 140)
    im, lab = make_nuclei_3d((6, 48, 64), seed=0)
    assert im.shape == lab.shape == (6, 48, 64)
    assert im.dtype == np.uint16 and lab.dtype == np.int32
    with pytest.raises(ValueError):
        make_nuclei_2d((4, 64, 64))
    with pytest.raises(ValueError):
        make_nuclei_3d((64, 64))


def test_n_nuclei_is_respected():
    _, lab = make_nuclei_2d((256, 256), seed=2, n_nuclei=12)
    assert lab.max() == 12
    im, lab = make_nuclei_2d((64, 64), seed=2, n_nuclei=0)
    assert lab.max() == 0 and im.std() > 0  # background and noise only


@pytest.mark.parametrize("which", ["default_2d", "default_3d"])
def test_labels_consecutive_visible_connected(which, request):
    image, labels, info = request.getfixturevalue(which)
    p = NucleiParams()
    n = int(labels.max())
    assert n >= 10
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
    assert len(info["full_size"]) == n
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.min() >= p.min_size
    frac = sizes / info["full_size"]
    assert frac.min() >= p.min_visible_fraction
    assert 0.85 < np.median(frac) < 1.2  # full_size is the real, unoccluded size
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        assert ndi.label(labels[sl] == i)[1] == 1, f"label {i} is split"
    # sizes and brightness vary from nucleus to nucleus
    means = ndi.mean(image, labels, np.arange(1, n + 1))
    assert sizes.std() / sizes.mean() > 0.2
    assert means.std() / means.mean() > 0.1


def test_crowded_elongated_nuclei_are_never_split():
    # Deep overlaps of thin ellipses would cut occluded nuclei in two without the check.
    kw = dict(
        axis_ratio_range=(0.3, 0.45),
        touching_fraction=0.9,
        max_overlap=0.6,
        min_visible_fraction=0.4,
        density=2e-3,
        irregularity=0.3,
    )
    for seed in range(2):
        _, labels, info = generate_nuclei(NucleiParams(shape=(128, 128)), seed, **kw)
        assert labels.max() >= 20
        assert (np.bincount(labels.ravel())[1:] / info["full_size"]).min() >= 0.4
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            assert ndi.label(labels[sl] == i)[1] == 1, f"label {i} is split"


def test_touching_pairs_exist(default_2d):
    assert len(_touching_pairs(default_2d[1])) >= 2
    # Without touching placements no nucleus overlaps another, so pairs are rare.
    _, lab = make_nuclei_2d(seed=11, touching_fraction=0.0)
    assert len(_touching_pairs(lab)) < len(_touching_pairs(default_2d[1]))


def _quad(info, i, shape, spacing=(1.0, 1.0)):
    """``d^T A d`` of object ``i`` over the image grid (<= 1 inside its ellipse)."""
    grid = np.indices(shape).astype(float)
    d = (grid - info["centers"][i][:, None, None]) * np.asarray(spacing)[:, None, None]
    rot, axes = info["rotations"][i], info["axes"][i]
    a_mat = (rot / axes**2) @ rot.T
    return np.einsum("i...,ij,j...->...", d, a_mat, d)


def test_overlap_later_in_front_and_intensities_add():
    # Two nuclei forced to overlap deeply (seed 0 puts their centres 9 px apart).
    kw = dict(
        n_nuclei=2,
        touching_fraction=1.0,
        max_overlap=0.6,
        min_visible_fraction=0.3,
        radius_range=(10, 10),
        axis_ratio_range=(0.8, 1.0),
        brightness_range=(0.8, 0.8),
        texture_strength=0.0,
        n_spots=(0, 0),
        irregularity=0.0,
    )
    image, labels, info = generate_nuclei(NucleiParams(shape=(64, 64)), seed=0, **kw)
    assert labels.max() == 2
    q1, q2 = _quad(info, 0, labels.shape), _quad(info, 1, labels.shape)
    assert (labels[q2 <= 1] == 2).all()  # the later nucleus is in front
    assert ((labels == 1) == ((q1 <= 1) & (q2 > 1))).mean() > 0.99
    both = (q1 < 0.5) & (q2 < 0.5)
    assert both.sum() >= 20
    signal = image.astype(float) - 100  # minus the camera offset
    one = signal[(q1 < 0.5) & (q2 > 1.5)].mean()
    two = signal[(q2 < 0.5) & (q1 > 1.5)].mean()
    assert signal[both].mean() > 1.5 * max(one, two)


def test_signal_well_above_background(default_2d):
    image, labels, _ = default_2d
    far = ~ndi.binary_dilation(labels > 0, iterations=6)
    bg = image[far].astype(float)
    fg = image[labels > 0].astype(float)
    assert fg.mean() - bg.mean() > 8 * bg.std()
    p = NucleiParams()
    assert image.max() < 2**p.bit_depth - 1  # not saturated
    assert image.min() > 0


def test_noise_depends_on_photon_scale():
    kw = dict(n_nuclei=0, background=0.5, background_gradient=0.0, read_noise=0.0)
    noisy, _ = make_nuclei_2d((64, 64), seed=0, photon_scale=50, **kw)
    clean, _ = make_nuclei_2d((64, 64), seed=0, photon_scale=5000, **kw)
    cv = [(x.astype(float) - 100).std() / (x.astype(float) - 100).mean() for x in (noisy, clean)]
    assert cv[0] == pytest.approx(1 / np.sqrt(25), rel=0.2)  # Poisson: 25 photons/pixel
    assert cv[1] < 0.3 * cv[0]


def test_uneven_background():
    image, _ = make_nuclei_2d((128, 128), seed=1, n_nuclei=0, photon_scale=1e5)
    smooth = ndi.uniform_filter(image.astype(float), 15)[8:-8, 8:-8]
    assert smooth.max() - smooth.min() > 0.15 * (smooth.mean() - 100)


def test_3d_objects_have_contiguous_z_extent(default_3d):
    _, labels, info = default_3d
    nz = labels.shape[0]
    inner = 0
    for i in range(1, labels.max() + 1):
        zs = np.flatnonzero((labels == i).any(axis=(1, 2)))
        assert len(zs) >= 2 and zs[0] >= 0 and zs[-1] < nz
        np.testing.assert_array_equal(zs, np.arange(zs[0], zs[-1] + 1))  # contiguous
        cz, hz = info["centers"][i - 1, 0], info["half_extent"][i - 1, 0]
        assert cz - hz - 1 <= zs[0] and zs[-1] <= cz + hz + 1
        inner += zs[0] > 0 and zs[-1] < nz - 1
    assert inner >= 3  # ellipsoids that start and end inside the stack


def test_3d_psf_blurs_along_z():
    kw = dict(n_nuclei=3, photon_scale=1e5, read_noise=0.0, background=0.0)
    out = []
    for sz in (0.3, 3.0):
        image, labels = make_nuclei_3d((16, 48, 48), seed=0, blur_sigma_z=sz, **kw)
        signal = image.astype(float) - 100
        in_z = (labels > 0).any(axis=(1, 2))
        out.append((signal[~in_z].sum() / signal.sum(), labels))
    np.testing.assert_array_equal(out[0][1], out[1][1])  # same objects
    assert (~(out[0][1] > 0).any(axis=(1, 2))).any()  # some empty slices exist
    assert out[1][0] > 2 * out[0][0] + 0.01


def test_sample_stack():
    image, labels = make_sample_stack()
    assert image.shape == (12, 2, 192, 192) and image.dtype == np.uint16
    assert labels.shape == (12, 192, 192) and labels.dtype == np.int32
    n = labels.max()
    assert n >= 10
    np.testing.assert_array_equal(np.unique(labels), np.arange(n + 1))
    nuc, cyto = image[:, 0].astype(float), image[:, 1].astype(float)
    inside = labels > 0
    ring = ndi.binary_dilation(inside, iterations=5) & ~ndi.binary_dilation(inside, iterations=2)
    far = ~ndi.binary_dilation(inside, iterations=25)
    assert nuc[inside].mean() > 3 * nuc[ring].mean() - 2 * 100
    assert cyto[ring].mean() > cyto[far].mean() + 3 * cyto[far].std()
    assert cyto[ring].mean() > cyto[inside].mean()  # cytoplasm is dimmer over the nucleus
    np.testing.assert_array_equal(make_sample_stack()[0], image)


def test_styles_of_the_held_out_benchmark():
    """[tiny-v2] 1, first step: named presets of the generator, each what it says."""
    from skimage.measure import regionprops

    from napari_sam.train.styles import STYLES, style_params

    assert list(STYLES)[0] == "default" and style_params("default") == {}
    images = {n: make_nuclei_2d((256, 256), seed=3, **style_params(n)) for n in STYLES}
    for name, (image, labels) in images.items():
        again = make_nuclei_2d((256, 256), seed=3, **style_params(name))
        np.testing.assert_array_equal(image, again[0])
        assert image.dtype == np.uint16 and labels.max() > 5, name
    assert images["low_range_haze"][0].max() <= 235  # a low range in a 16-bit container

    def aspect(labels):
        return max(r.axis_major_length / max(r.axis_minor_length, 1) for r in regionprops(labels))

    assert aspect(images["elongated_crowded"][1]) > 2 > aspect(images["default"][1])
    assert images["elongated_crowded"][1].max() > 1.5 * images["default"][1].max()  # crowded
    with pytest.raises(ValueError, match="style: unknown 'x'; expected one of default"):
        style_params("x")


def test_mitotic_nuclei_are_few_compact_and_bright_and_leave_other_images_unchanged():
    """``mitotic_fraction``: a few nuclei 3 to 5 x brighter and smaller, so the others are dim
    once normalised (the ``mitotic_dim`` style); 0 (the default) draws nothing more, so every
    other style's images are the same for the same seed."""
    from scipy import ndimage as ndi

    from napari_sam.train.styles import style_params
    from napari_sam.train.synthetic import generate_nuclei

    image, labels, info = generate_nuclei(seed=4, shape=(512, 512), **style_params("mitotic_dim"))
    ids = np.arange(1, labels.max() + 1)
    peaks = np.asarray(ndi.maximum(image.astype(np.float64), labels, ids))
    size = info["axes"][:, 0]  # longest semi-axis, drawn before any occlusion
    bright = peaks > 2.5 * np.median(peaks)
    assert 1 <= bright.sum() <= 0.2 * len(ids)
    assert np.median(size[bright]) < 0.85 * np.median(size[~bright])
    assert image.max() <= 235 and np.median(peaks) < 0.5 * image.max()  # the others are dim
    plain, plain_labels, _ = generate_nuclei(seed=4, shape=(512, 512))
    same, same_labels, _ = generate_nuclei(seed=4, shape=(512, 512), mitotic_brightness=(9, 9),
                                           mitotic_scale=(0.1, 0.1))  # fmt: skip
    np.testing.assert_array_equal(plain, same)  # the fraction is 0: nothing else is drawn
    np.testing.assert_array_equal(plain_labels, same_labels)


def test_edge_level_puts_the_label_edge_higher_on_the_intensity_ramp():
    """``edge_level=0.5``: labels end near half maximum (as people draw), with a faint glow
    past them; by default they reach the foot of the ramp (the dim rim is inside)."""
    from scipy import ndimage as ndi

    from napari_sam.train.synthetic import make_nuclei_2d

    def level_at_edge(image, labels):
        image = image.astype(np.float32)
        bg = np.median(image[labels == 0])
        levels = []
        for i in np.unique(labels[labels > 0]):
            m = labels == i
            inner = ndi.binary_erosion(m, iterations=3)
            if inner.sum() < 10:
                continue
            edge = m & ~ndi.binary_erosion(m)
            levels.append((np.median(image[edge]) - bg) / (np.median(image[inner]) - bg))
        return float(np.median(levels))

    default = level_at_edge(*make_nuclei_2d((192, 192), seed=4))
    half = level_at_edge(*make_nuclei_2d((192, 192), seed=4, edge_level=0.5))
    assert default < 0.45 and 0.5 < half < 0.7, (default, half)
    a, la = make_nuclei_2d((96, 96), seed=5)
    b, lb = make_nuclei_2d((96, 96), seed=5, edge_level=0.0)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
