"""Intensity normalisation of microscopy stacks to the ``[0, 255]`` range SAM expects.

The ranges are fitted once over the whole stack (a bounded, seeded sample of pixels from at
most ``max_slices`` slices), per channel, so every slice of a stack is mapped the same way.

The default mode, ``"auto"``, keeps 8-bit data as it is (parity with Meta's SAM on RGB uint8
images), treats data that is exactly 8-bit data in another dtype the same way (uint16 values all
multiples of 257, floats in ``[0, 1]`` all multiples of 1/255) and stretches everything else
between the 0.1 and 99.9 percentiles. Percentiles scale with the data, so ``x``, ``x * 257``
and ``x / 255`` give the same normalised values in every mode except ``"fixed"``.

Non-finite pixels (NaN, +/-Inf) never reach the fitted statistics: the percentiles, the minimum
and maximum and the 8-bit check of ``"auto"`` use only the finite sampled values, and a channel
without any finite sampled value is refused. :meth:`FittedNormalization.apply` maps NaN pixels to
0 and +/-Inf to the clipped ends (255 / 0), so its output is always finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FittedNormalization", "Normalization", "sample_pixels"]

_MODES = ("auto", "percentile", "minmax", "dtype", "fixed", "none")


def sample_pixels(view, max_slices: int = 32, max_samples: int = 1_000_000, seed: int = 0):
    """Return a seeded sample of pixel values of a stack as an ``(N, C)`` float64 array.

    Parameters
    ----------
    view : StackView
        The stack (anything with ``len``, ``get_slice`` and ``slice_shape``).
    max_slices : int
        At most this many slices are read, evenly spaced through the stack.
    max_samples : int
        At most this many pixels in total (all pixels of a slice when they fit).
    seed : int
        Seed of the pixel choice; the chosen positions depend only on shapes, never on values.
    """
    n = len(view)
    slices = np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int))
    per_slice = max(1, max_samples // len(slices))
    parts = []
    for i in slices:
        img = _read_for_sampling(view, int(i), per_slice)
        flat = img.reshape(-1, img.shape[-1])
        if flat.shape[0] > per_slice:
            rng = np.random.default_rng([seed, int(i)])
            flat = flat[rng.integers(0, flat.shape[0], per_slice)]
        parts.append(flat.astype(np.float64))
    return np.concatenate(parts)


_LARGE_SLICE = 1 << 24  # pixels (4096 x 4096): larger slices are sampled in blocks
_BLOCK = 128


def _read_for_sampling(view, i: int, per_slice: int) -> np.ndarray:
    """Slice ``i``, or for a slice over 16 M pixels an even grid of blocks of it.

    The blocks hold about four times ``per_slice`` pixels, so an image larger than memory is
    fitted on a bounded, spread-out part of it (read region by region).
    """
    h, w = view.slice_shape
    if h * w <= _LARGE_SLICE or not hasattr(view, "get_region"):
        return view.get_slice(i)
    side = max(1, min(min(h, w) // _BLOCK, math.isqrt(max(1, 4 * per_slice // _BLOCK**2))))
    ys = np.linspace(0, h - _BLOCK, side).round().astype(int)
    xs = np.linspace(0, w - _BLOCK, side).round().astype(int)
    blocks = [
        view.get_region(i, slice(y, y + _BLOCK), slice(x, x + _BLOCK)) for y in ys for x in xs
    ]
    return np.concatenate([b.reshape(-1, b.shape[-1]) for b in blocks])[:, None, :]


def _dtype_range(dtype: np.dtype) -> tuple[float, float]:
    if dtype.kind == "b":
        return 0.0, 1.0
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0  # float data is taken to be in [0, 1]


def _is_8bit_equivalent(dtype: np.dtype, sample: np.ndarray) -> bool:
    """Whether the sampled values are exactly 8-bit values stored in ``dtype``."""
    if dtype in (np.uint8, np.bool_):
        return True
    if dtype.kind == "u" and np.iinfo(dtype).max % 255 == 0:
        return bool(np.all(sample % (np.iinfo(dtype).max // 255) == 0))
    if dtype.kind == "f":
        sample = sample[np.isfinite(sample)]  # non-finite pixels say nothing about the range
        if sample.size == 0 or sample.min() < 0 or sample.max() > 1:
            return False
        scaled = sample.astype(np.float64) * 255
        steps = np.round(scaled)
        if np.any((sample != 0) & (steps == 0)):  # below one 8-bit step: by range, not 8-bit
            return False
        return bool(np.all(np.abs(scaled - steps) < 1e-3))
    return False


def _finite_columns(sample: np.ndarray) -> list[np.ndarray] | None:
    """The finite values of each channel of ``sample``; ``None`` when all values are finite.

    Raises
    ------
    ValueError
        If a channel has no finite sampled value at all.
    """
    finite = np.isfinite(sample)
    if finite.all():
        return None
    columns = [sample[finite[:, j], j] for j in range(sample.shape[1])]
    empty = [j for j, col in enumerate(columns) if col.size == 0]
    if empty:
        raise ValueError(
            f"image: channel {empty[0]} has no finite value in the sampled pixels "
            "(all NaN or infinite); cannot fit a normalisation"
        )
    return columns


def _check_finite_range(name: str, value) -> None:
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected numbers, got {value!r}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values (no NaN or infinity), got {value!r}")


@dataclass(frozen=True)
class Normalization:
    """Settings of the normalisation; :meth:`fit` it on a stack before use.

    Parameters
    ----------
    mode : {"auto", "percentile", "minmax", "dtype", "fixed", "none"}
        ``"percentile"``: stretch the ``low`` .. ``high`` percentiles of each channel to
        0 .. 255. ``"minmax"``: the sampled minimum .. maximum. ``"dtype"``: the dtype's range
        (uint8 as is, uint16 0..65535, float 0..1). ``"fixed"``: ``vmin`` .. ``vmax``.
        ``"none"``: values are used as they are (data already in 0..255). ``"auto"`` (default):
        ``"dtype"`` for 8-bit(-equivalent) data, else ``"percentile"``.
    low, high : float
        Percentiles for ``"percentile"`` / ``"auto"``.
    vmin, vmax : float or sequence of float, optional
        Range for ``"fixed"`` (one value, or one per channel); must be finite.
    max_slices, max_samples, seed : int
        Sampling bounds, see :func:`sample_pixels`.

    Raises
    ------
    ValueError
        For an unknown mode, percentiles outside ``0 <= low < high <= 100``, or a missing or
        non-finite ``vmin`` / ``vmax``.
    """

    mode: str = "auto"
    low: float = 0.1
    high: float = 99.9
    vmin: float | tuple | None = None
    vmax: float | tuple | None = None
    max_slices: int = 32
    max_samples: int = 1_000_000
    seed: int = 0

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {self.mode!r}")
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(
                f"low, high: expected 0 <= low < high <= 100, got {self.low}, {self.high}"
            )
        if self.mode == "fixed" and (self.vmin is None or self.vmax is None):
            raise ValueError("vmin, vmax: mode 'fixed' needs both vmin and vmax")
        for name in ("vmin", "vmax"):
            if getattr(self, name) is not None:
                _check_finite_range("vmin, vmax", getattr(self, name))

    @classmethod
    def fixed(cls, vmin, vmax) -> Normalization:
        """Explicit range ``vmin`` .. ``vmax`` (finite scalars or one value per channel).

        Raises
        ------
        ValueError
            If a value is not a finite number.
        """
        for v in (vmin, vmax):
            _check_finite_range("vmin, vmax", v)
        lo, hi = (tuple(np.atleast_1d(np.asarray(v, np.float64)).tolist()) for v in (vmin, vmax))
        return cls(mode="fixed", vmin=lo, vmax=hi)

    def fit(self, view) -> FittedNormalization:
        """Fit per-channel ranges on a stack and return the fitted normalisation.

        Parameters
        ----------
        view : StackView
            The whole stack; only a bounded sample of it is read.

        Raises
        ------
        ValueError
            If a channel has no finite sampled value (modes ``"auto"`` with non-8-bit data,
            ``"percentile"`` and ``"minmax"``), or ``vmin`` / ``vmax`` do not match the channels.
        """
        dtype, c = np.dtype(view.dtype), view.n_channels
        mode, sample = self.mode, None
        if mode in ("auto", "percentile", "minmax"):
            sample = sample_pixels(view, self.max_slices, self.max_samples, self.seed)
        if mode == "auto":
            mode = "dtype" if _is_8bit_equivalent(dtype, sample) else "percentile"
        columns = _finite_columns(sample) if mode in ("percentile", "minmax") else None
        if mode == "percentile" and columns is None:
            lo, hi = np.percentile(sample, [self.low, self.high], axis=0)
        elif mode == "percentile":
            lo, hi = np.stack([np.percentile(col, [self.low, self.high]) for col in columns], 1)
        elif mode == "minmax" and columns is None:
            lo, hi = sample.min(axis=0), sample.max(axis=0)
        elif mode == "minmax":
            lo, hi = np.array([[col.min(), col.max()] for col in columns]).T
        elif mode == "dtype":
            lo, hi = (np.full(c, v) for v in _dtype_range(dtype))
        elif mode == "fixed":
            lo, hi = (np.atleast_1d(np.asarray(v, np.float64)) for v in (self.vmin, self.vmax))
            if {len(lo), len(hi)} - {1, c}:
                raise ValueError(
                    f"vmin, vmax: expected 1 or {c} values (one per channel), "
                    f"got {self.vmin}, {self.vmax}"
                )
            lo, hi = np.broadcast_to(lo, c), np.broadcast_to(hi, c)
        else:  # none
            lo, hi = np.zeros(c), np.full(c, 255.0)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):  # e.g. overflow near 1e308
            raise ValueError(f"image: the fitted range is not finite (lo={lo}, hi={hi})")
        background = lo if sample is None else background_level(sample, columns, lo, hi)
        return FittedNormalization(self, mode, dtype, tuple(map(float, lo)), tuple(map(float, hi)),
                                   tuple(map(float, background)))  # fmt: skip


def background_level(sample: np.ndarray, columns, lo, hi) -> np.ndarray:
    """Per channel, the median of the sampled values below Otsu's threshold (the image's
    background), within ``lo .. hi``: tiles reaching past a slice are padded with it.

    ``columns``: the finite values of each channel (:func:`_finite_columns`), or None (then
    the finite values of ``sample``'s columns). A channel with a single value gives that
    value, one with no finite value its ``lo``.
    """
    from skimage.filters import threshold_otsu

    cols = columns if columns is not None else [c[np.isfinite(c)] for c in sample.T]
    out = []
    for col, low in zip(cols, np.broadcast_to(lo, len(cols)), strict=True):
        below = col[col < threshold_otsu(col)] if col.size and np.ptp(col) > 0 else col
        out.append(np.median(below) if below.size else low)
    return np.clip(np.asarray(out, np.float64), lo, hi)


@dataclass(frozen=True)
class FittedNormalization:
    """A normalisation with its per-channel ranges fitted; maps slices to float32 [0, 255].

    Attributes
    ----------
    settings : Normalization
        The settings it was fitted with.
    mode : str
        The mode actually used (``"auto"`` resolved to ``"dtype"`` or ``"percentile"``).
    dtype : numpy.dtype
        Dtype of the data it was fitted on.
    lo, hi : tuple of float
        Per-channel input values mapped to 0 and 255.
    background : tuple of float, optional
        Per-channel background level (:func:`background_level`; ``lo`` when no sample was
        read): the value of padded pixels.
    """

    settings: Normalization
    mode: str
    dtype: np.dtype
    lo: tuple
    hi: tuple
    background: tuple | None = None

    @property
    def pad_value(self) -> tuple:
        """Per-channel value of pixels padded past a slice's border (its background: a
        nucleus model reads a black band beside a dim background as objects)."""
        return self.lo if self.background is None else self.background

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Map a ``(Y, X, C)`` slice to float32 in ``[0, 255]`` (values outside are clipped).

        NaN pixels are mapped to 0, ``+Inf`` to 255 and ``-Inf`` to 0 (in a constant channel,
        where every value maps to 0, infinities map to 0 too), so the result is always finite.

        Raises
        ------
        ValueError
            If the number of channels differs from the fitted one.
        """
        if image.ndim != 3 or image.shape[-1] != len(self.lo):
            raise ValueError(
                f"image: expected a (Y, X, {len(self.lo)}) slice, got shape {image.shape}"
            )
        # float64 arithmetic, so that x, x * 257 and x / 255 map to the same float32 values
        lo = np.asarray(self.lo, np.float64)
        span = np.asarray(self.hi, np.float64) - lo
        scale = np.where(span > 0, 255.0 / np.where(span > 0, span, 1.0), 0.0)  # constant -> 0
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0, float32 overflow
            out = ((image.astype(np.float64) - lo) * scale).astype(np.float32)
        np.clip(out, 0.0, 255.0, out=out)  # +/-inf -> 255 / 0; NaN stays NaN
        if image.dtype.kind not in "biu":  # integers are never NaN
            np.nan_to_num(out, copy=False, nan=0.0)
        return out

    __call__ = apply

    def describe(self) -> str:
        """One line saying what was chosen, e.g. ``"auto: percentiles 0.1 .. 99.9 (values
        1.2e-07 .. 3.9e-06 -> 0 .. 255)"``."""
        s = self.settings
        how = {
            "percentile": f"percentiles {s.low:g} .. {s.high:g}",
            "minmax": "minimum .. maximum",
            "dtype": f"the {self.dtype.name} range (8-bit data kept as it is)"
            if self.dtype.kind != "f" or s.mode != "auto"
            else "8-bit steps in [0, 1] (kept as 8-bit data)",
            "fixed": "vmin .. vmax",
            "none": "values used as they are",
        }[self.mode]
        ranges = ", ".join(f"{lo:.4g} .. {hi:.4g}" for lo, hi in zip(self.lo, self.hi, strict=True))
        return f"{s.mode}: {how} (values {ranges} -> 0 .. 255)"

    def signature(self) -> str:
        """A stable string of the mode, its parameters and the fitted ranges."""
        s = self.settings
        params = {
            "auto": f"low={s.low!r},high={s.high!r}",
            "percentile": f"low={s.low!r},high={s.high!r}",
            "minmax": "",
            "fixed": "",
            "dtype": "",
            "none": "",
        }[s.mode]
        if s.mode in ("auto", "percentile", "minmax"):
            params += f",slices={s.max_slices},samples={s.max_samples},seed={s.seed}"
        lo = ",".join(repr(v) for v in self.lo)
        hi = ",".join(repr(v) for v in self.hi)
        return f"{s.mode}->{self.mode}({params.strip(',')}):dtype={self.dtype.str}:lo={lo}:hi={hi}"
