"""Interpolation matrices with PyTorch's ``F.interpolate`` semantics (``align_corners=False``).

Resizing a positional embedding is a linear map along each axis. Expressing it as a matrix
lets the same numbers be used when converting weights (numpy) and inside a TensorFlow graph
(a constant ``einsum``), and makes the result identical to PyTorch's for the same sizes.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=64)
def linear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Matrix ``A`` of shape (out_size, in_size) with ``A @ x`` = linear interpolation.

    Matches ``torch.nn.functional.interpolate(mode="linear", align_corners=False)``.
    """
    a = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        src = max(scale * (i + 0.5) - 0.5, 0.0)
        i0 = min(int(np.floor(src)), in_size - 1)
        i1 = i0 + 1 if i0 < in_size - 1 else i0
        t = src - i0
        a[i, i0] += 1.0 - t
        a[i, i1] += t
    return a


def _cubic_weights(t: float, a: float = -0.75) -> tuple[float, float, float, float]:
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Matrix of shape (out_size, in_size) for 1-D cubic convolution (A = -0.75).

    Applying it along both spatial axes matches
    ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``.
    """
    a = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        src = scale * (i + 0.5) - 0.5
        i0 = int(np.floor(src))
        for k, w in zip(range(i0 - 1, i0 + 3), _cubic_weights(src - i0), strict=True):
            a[i, min(max(k, 0), in_size - 1)] += w
    return a


def resize_pos_embed(pos_embed: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Resize an absolute positional embedding of shape (1, H, W, C) to ``grid`` (bicubic)."""
    _, h, w, _ = pos_embed.shape
    if (h, w) == tuple(grid):
        return pos_embed
    ah, aw = bicubic_matrix(h, grid[0]), bicubic_matrix(w, grid[1])
    out = np.einsum("ih,bhwc,jw->bijc", ah, pos_embed.astype(np.float64), aw)
    return out.astype(pos_embed.dtype)


def resize_rel_pos(rel_pos: np.ndarray, length: int) -> np.ndarray:
    """Resize a relative position table of shape (L, C) to ``length`` rows (linear).

    This is what Meta's ``get_rel_pos`` does on the fly when the table does not fit.
    """
    if rel_pos.shape[0] == length:
        return rel_pos
    out = linear_matrix(rel_pos.shape[0], length) @ rel_pos.astype(np.float64)
    return out.astype(rel_pos.dtype)
