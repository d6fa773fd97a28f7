"""Synthetic fluorescence-microscopy images of nuclei with instance labels.

Widefield-like 2-D images and 3-D stacks of DAPI-stained nuclei (ellipsoids of varying size,
shape, orientation and brightness with chromatin-like texture; touching and overlapping
neighbours; an optional cytoplasm-like second channel), blurred by a Gaussian PSF (anisotropic
in z), on an uneven background, with Poisson and Gaussian read noise, as non-saturated
``uint16``. Used to train ``sam_tiny_nuclei``, as the napari plugin's sample data, and in
tests and benchmarks. Pure numpy/scipy; the same seed gives identical arrays.

Labels are ``int32`` with ids ``1..n`` (no gaps). Where nuclei overlap the later one wins in
the labels (it is in front) while intensities add. A placement is rejected if it would leave
any nucleus split, smaller than ``min_size``, or with less than ``min_visible_fraction`` of
its full area/volume visible (after occlusion and border cropping).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "HALF_MAXIMUM_EDGE",
    "NucleiParams",
    "generate_nuclei",
    "make_nuclei_2d",
    "make_nuclei_3d",
    "make_sample_stack",
]


# ``edge_level`` of labels drawn where people draw them: at half a nucleus's intensity
# ([tiny-v2]); the held-out benchmark, the tests and the demo use it
HALF_MAXIMUM_EDGE = 0.5


@dataclass
class NucleiParams:
    """Parameters of the synthetic nuclei generator (lengths in xy pixels).

    Intensities are relative to ``photon_scale`` (photons at intensity 1); ranges are
    ``(low, high)`` pairs sampled uniformly per object.

    Attributes
    ----------
    shape : ``(Y, X)`` or ``(Z, Y, X)``.
    n_nuclei, density : number of nuclei to place, or ``None`` to use ``density`` nuclei per
        xy pixel (times the depth over a nucleus diameter in 3-D). Fewer may fit when crowded.
    radius_range, axis_ratio_range : longest semi-axis (xy pixels) and the ratio of each
        other semi-axis to it; orientations are uniformly random.
    brightness_range : peak intensity of a nucleus.
    mitotic_fraction, mitotic_brightness, mitotic_scale : the fraction of nuclei drawn as
        mitotic ones (0 by default: none), their brightness relative to the others and their
        size relative to ``radius_range``: compact and 3 to 5 x brighter, so that once an
        image is normalised to its brightest pixels every other nucleus is dim.
    touching_fraction, max_overlap : probability that a nucleus is placed against an existing
        one (rather than freely, without overlap) and its largest relative overlap.
    min_visible_fraction, min_size : smallest visible part of a nucleus (after occlusion and
        border cropping) and smallest visible size in pixels (voxels in 3-D).
    irregularity : relative amplitude of smooth deviations of the outline from an ellipse.
    edge_level : a nucleus's intensity at its label's edge (before blur), relative to its
        interior: 0 (default) puts the edge at the foot of the intensity ramp (labels include
        the dim rim); 0.5 at half maximum, where people draw (the ramp then extends past the
        label as a faint glow).
    texture_strength, texture_sigma, n_spots : chromatin-like texture (relative amplitude,
        correlation length) and number of bright chromocenter-like spots.
    background, background_gradient : background level and its relative variation (ramp plus
        vignetting).
    blur_sigma, blur_sigma_z, z_scale : Gaussian PSF sigma in xy pixels and in z slices, and
        the z step in xy pixels (anisotropy).
    photon_scale, read_noise : Poisson photon scale and Gaussian read noise (electrons).
    offset, bit_depth, headroom : camera offset (ADU), output bit depth, and the fraction of
        the range above the offset reached by the brightest pixel (no saturation).
    second_channel, cell_scale_range, cytoplasm_brightness : add a cytoplasm-like channel
        (cell-body semi-axes relative to the nucleus's, brightness); the channel axis is put
        before Y: ``(C, Y, X)`` or ``(Z, C, Y, X)``.
    """

    shape: tuple[int, ...] = (256, 256)
    n_nuclei: int | None = None
    density: float = 3e-4
    radius_range: tuple[float, float] = (10.0, 18.0)
    axis_ratio_range: tuple[float, float] = (0.65, 1.0)
    brightness_range: tuple[float, float] = (0.35, 1.0)
    mitotic_fraction: float = 0.0
    mitotic_brightness: tuple[float, float] = (3.0, 5.0)
    mitotic_scale: tuple[float, float] = (0.55, 0.8)
    touching_fraction: float = 0.35
    max_overlap: float = 0.2
    min_visible_fraction: float = 0.6
    min_size: int = 25
    irregularity: float = 0.12
    edge_level: float = 0.0
    texture_strength: float = 0.2
    texture_sigma: float = 1.5
    n_spots: tuple[int, int] = (0, 4)
    background: float = 0.06
    background_gradient: float = 0.5
    blur_sigma: float = 1.0
    blur_sigma_z: float = 1.5
    z_scale: float = 2.0
    photon_scale: float = 400.0
    read_noise: float = 3.0
    offset: float = 100.0
    bit_depth: int = 12
    headroom: float = 0.75
    second_channel: bool = False
    cell_scale_range: tuple[float, float] = (1.5, 2.1)
    cytoplasm_brightness: float = 0.35


def _rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    return q * np.sign(np.diag(r))


def _bbox(center, axes, rot, spacing, shape):
    """Slices of the grid bounding box of an ellipsoid, clipped to the image (or None)."""
    half = np.sqrt((rot**2) @ axes**2)
    lo = np.maximum(np.floor((center - half) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((center + half) / spacing).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _quad(center, a_mat, sl, spacing):
    """Quadratic form ``d^T A d`` (<= 1 inside the ellipsoid) over the box ``sl``."""
    d = np.meshgrid(
        *[
            np.arange(s.start, s.stop) * sp - c
            for s, sp, c in zip(sl, spacing, center, strict=True)
        ],
        indexing="ij",
        sparse=True,
    )
    n = len(d)
    return sum(a_mat[i, j] * d[i] * d[j] for i in range(n) for j in range(n))


def _field(rng, shape, sigma, spacing):
    """Smooth zero-mean random field with (expected) unit standard deviation."""
    s = np.maximum(sigma / np.asarray(spacing), 0.5)
    f = ndi.gaussian_filter(rng.standard_normal(shape), s, truncate=3)
    return f * np.sqrt(np.prod(2 * np.sqrt(np.pi) * s))


def _background(rng, p: NucleiParams) -> np.ndarray:
    """Uneven ``(Y, X)`` background: a linear ramp in a random direction plus vignetting."""
    y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in p.shape[-2:]], indexing="ij", sparse=True)
    u = rng.standard_normal(2)
    c0 = rng.uniform(-0.5, 0.5, 2)
    ramp = (u[0] * y + u[1] * x) / np.linalg.norm(u)
    r2 = (y - c0[0]) ** 2 + (x - c0[1]) ** 2
    bg = 1 + p.background_gradient * (0.5 * ramp - 0.5 * (r2 / 2.25) + 0.25)
    return (p.background * np.clip(bg, 0.2, None)).astype(np.float32)


def _to_counts(rng, signal, p: NucleiParams) -> np.ndarray:
    electrons = rng.poisson(np.clip(signal, 0, None) * p.photon_scale).astype(np.float32)
    electrons += p.read_noise * rng.standard_normal(signal.shape, dtype=np.float32)
    full = 2**p.bit_depth - 1
    gain = p.headroom * (full - p.offset) / max(float(electrons.max()), 1.0)
    return np.clip(np.rint(p.offset + gain * electrons), 0, full).astype(np.uint16)


def generate_nuclei(
    params: NucleiParams | None = None, seed: int = 0, **overrides
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Generate a synthetic nuclei image, its instance labels and per-object ground truth.

    Parameters
    ----------
    params : NucleiParams, optional
        Generator parameters (defaults: a 256 x 256 DAPI-like image).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives identical arrays.
    **overrides
        Fields of :class:`NucleiParams` replacing those of ``params``.

    Returns
    -------
    image : ndarray of uint16
        ``shape``, or with a channel axis of length 2 before Y if ``second_channel``.
    labels : ndarray of int32
        ``shape``; 0 is background and the nuclei are ``1..n``.
    info : dict
        ``centers`` (n, ndim) in pixel/slice coordinates, ``axes`` (n, ndim) semi-axes in
        xy pixels, ``rotations`` (n, ndim, ndim), ``full_size`` (n,) analytic unclipped
        area/volume in pixels, ``half_extent`` (n, ndim) half size of the box that bounds
        each object, in pixels/slices.
    """
    p = replace(params or NucleiParams(), **overrides)
    shape = tuple(int(s) for s in p.shape)
    nd = len(shape)
    if nd not in (2, 3):
        raise ValueError(f"shape must be 2-D or 3-D, got {shape}")
    rng = np.random.default_rng(seed)
    spacing = np.array([p.z_scale, 1.0, 1.0][-nd:]) if nd == 3 else np.ones(2)
    extent = (np.array(shape) - 1) * spacing
    r_lo, r_hi = p.radius_range
    if p.n_nuclei is None:
        depth = max(1.0, extent[0] / (r_lo + r_hi)) if nd == 3 else 1.0
        n_target = int(round(p.density * shape[-1] * shape[-2] * depth))
    else:
        n_target = int(p.n_nuclei)
    unit_vol = np.pi if nd == 2 else 4 * np.pi / 3
    pad = 1.16 if p.irregularity else 1.0  # outlines reach up to 1/sqrt(0.75) of the axes

    labels = np.zeros(shape, np.int32)
    nuc = np.zeros(shape, np.float32)
    cyto = np.zeros(shape, np.float32) if p.second_channel else None
    objs: list[dict] = []
    vis = [0]  # visible pixel count per label id

    for _ in range(n_target):
        touching = bool(objs) and rng.random() < p.touching_fraction
        # drawn only where asked for, so that images without mitoses keep their seeds' draws
        mitotic = p.mitotic_fraction > 0 and rng.random() < p.mitotic_fraction
        scale = rng.uniform(*p.mitotic_scale) if mitotic else 1.0
        for attempt in range(40):
            axes = scale * rng.uniform(r_lo, r_hi) * np.r_[
                1.0, rng.uniform(*p.axis_ratio_range, nd - 1)]
            rot = _rotation(rng, nd)
            a_mat = (rot / axes**2) @ rot.T
            near = touching and attempt < 20
            if near:
                o = objs[rng.integers(len(objs))]
                u = rng.standard_normal(nd)
                u /= np.linalg.norm(u)
                reach = 1 / np.sqrt(u @ o["a_mat"] @ u) + 1 / np.sqrt(u @ a_mat @ u)
                center = o["center"] + u * reach * (1 - rng.uniform(0.03, p.max_overlap))
            else:
                center = rng.uniform(0, 1, nd) * extent
            sl = _bbox(center, axes * pad, rot, spacing, shape)
            if sl is None:
                continue
            q = _quad(center, a_mat, sl, spacing)
            if p.irregularity:
                bump = p.irregularity * _field(rng, q.shape, axes.min() / 2, spacing)
                q = q * np.clip(1 + bump, 0.75, 1.5)
            mask = q <= 1
            full = unit_vol * np.prod(axes) / np.prod(spacing)
            size = int(mask.sum())
            if size < max(p.min_size, p.min_visible_fraction * full) or ndi.label(mask)[1] != 1:
                continue
            under = labels[sl][mask]
            hit = np.bincount(under, minlength=len(vis))
            hit[0] = 0
            if not near and hit.any():
                continue
            ids = np.flatnonzero(hit)
            if any(
                vis[i] - hit[i] < max(p.min_size, p.min_visible_fraction * objs[i - 1]["full"])
                for i in ids
            ):
                continue
            new_id = len(vis)
            labels[sl][mask] = new_id
            if any(ndi.label(labels[objs[i - 1]["sl"]] == i)[1] != 1 for i in ids):
                labels[sl][mask] = under  # revert: the occluded nucleus would be split
                continue
            for i in ids:
                vis[i] -= int(hit[i])
            vis.append(size)
            objs.append(dict(center=center, axes=axes, rot=rot, a_mat=a_mat, sl=sl, full=full))
            # Intensity: soft edge, thickness dome, chromatin texture and bright spots.
            rho = np.sqrt(q)
            # the ramp crosses edge_level at the label's edge (0: the foot of the ramp)
            prof = np.clip((1 - rho) * axes.min() / 1.5 + p.edge_level, 0, 1)
            prof *= 0.75 + 0.25 * np.sqrt(np.clip(1 - q, 0, 1))
            tex = 1 + p.texture_strength * _field(rng, q.shape, p.texture_sigma, spacing)
            for _s in range(rng.integers(p.n_spots[0], p.n_spots[1] + 1)):
                sc = center + rng.uniform(-0.6, 0.6, nd) * axes.min()
                s2 = _quad(sc, np.eye(nd) / rng.uniform(1.0, 2.0) ** 2, sl, spacing)
                tex += rng.uniform(0.2, 0.6) * np.exp(-s2)
            peak = rng.uniform(*p.brightness_range)
            if mitotic:
                peak *= rng.uniform(*p.mitotic_brightness)
            nuc[sl] += peak * prof * tex
            if cyto is not None:
                cc = center + rng.uniform(-0.3, 0.3, nd) * axes.min()
                c_axes = axes * rng.uniform(*p.cell_scale_range, nd)
                c_rot = _rotation(rng, nd)
                c_mat = (c_rot / c_axes**2) @ c_rot.T
                csl = _bbox(cc, c_axes, c_rot, spacing, shape)
                if csl is not None:
                    cq = _quad(cc, c_mat, csl, spacing)
                    inner = np.clip((1 - np.sqrt(_quad(center, a_mat, csl, spacing))) * 3, 0, 1)
                    cell = np.clip((1 - np.sqrt(cq)) * c_axes.min() / 3.0, 0, 1)
                    ctex = 1 + 0.3 * _field(rng, cq.shape, 2.5, spacing)
                    bright = p.cytoplasm_brightness * rng.uniform(0.5, 1.0)
                    cyto[csl] += bright * cell * ctex * (1 - 0.8 * inner)
            break

    sigma = (p.blur_sigma_z, p.blur_sigma, p.blur_sigma)[-nd:] if nd == 3 else p.blur_sigma
    channels = [nuc] if cyto is None else [nuc, cyto]
    out = []
    for k, ch in enumerate(channels):
        ch = ndi.gaussian_filter(ch, sigma, truncate=3) + _background(rng, p) * (1 + k)
        out.append(_to_counts(rng, ch, p))
    image = out[0] if cyto is None else np.stack(out, axis=nd - 2)
    n = len(objs)
    info = dict(
        centers=np.array([o["center"] / spacing for o in objs]).reshape(n, nd),
        axes=np.array([o["axes"] for o in objs]).reshape(n, nd),
        rotations=np.array([o["rot"] for o in objs]).reshape(n, nd, nd),
        full_size=np.array([o["full"] for o in objs]),
        half_extent=np.array(
            [pad * np.sqrt((o["rot"] ** 2) @ o["axes"] ** 2) / spacing for o in objs]
        ).reshape(n, nd),
    )
    return image, labels, info


def make_nuclei_2d(
    shape: tuple[int, int] = (256, 256), seed: int = 0, **params
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 2-D DAPI-like image ``(H, W)`` of nuclei and its instance labels.

    ``params`` are other fields of :class:`NucleiParams`; the same ``seed`` gives identical
    arrays. Returns ``image`` (uint16, ``(H, W)``, or ``(2, H, W)`` with
    ``second_channel=True``) and ``labels`` (int32, ``(H, W)``, ids ``1..n``).
    """
    if len(shape) != 2:
        raise ValueError(f"make_nuclei_2d needs a 2-D shape, got {shape}")
    image, labels, _ = generate_nuclei(NucleiParams(shape=tuple(shape)), seed, **params)
    return image, labels


def make_nuclei_3d(
    shape: tuple[int, int, int] = (16, 256, 256), seed: int = 0, **params
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 3-D stack ``(Z, Y, X)`` of ellipsoidal nuclei and its instance labels.

    Each nucleus has one id in all slices and starts and ends at the slices its label covers.
    The PSF is anisotropic (``blur_sigma_z`` slices) and a z step is ``z_scale`` xy pixels.
    ``params`` are other fields of :class:`NucleiParams`; the same ``seed`` gives identical
    arrays. Returns ``image`` (uint16, ``(Z, Y, X)``, or ``(Z, 2, Y, X)`` with
    ``second_channel=True``) and ``labels`` (int32, ``(Z, Y, X)``, ids ``1..n``).
    """
    if len(shape) != 3:
        raise ValueError(f"make_nuclei_3d needs a 3-D shape, got {shape}")
    image, labels, _ = generate_nuclei(NucleiParams(shape=tuple(shape)), seed, **params)
    return image, labels


def make_sample_stack(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The plugin's sample data: a small two-channel 3-D stack with nuclei labels.

    Returns
    -------
    image : ndarray of uint16, ``(12, 2, 192, 192)`` (Z, C, Y, X): nuclei in channel 0 and a
        cytoplasm-like signal in channel 1.
    labels : ndarray of int32, ``(12, 192, 192)``
    """
    return make_nuclei_3d((12, 192, 192), seed=seed, second_channel=True)
