"""Mapping the channels of a microscopy slice onto the channels the image encoder takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChannelSpec"]

_MODES = ("adapt", "rgb", "single")


@dataclass(frozen=True)
class ChannelSpec:
    """How the ``C`` channels of a ``(Y, X, C)`` slice become the encoder's input channels.

    Parameters
    ----------
    mode : {"rgb", "single", "adapt"}
        ``"rgb"``: up to three channel indices go to R, G, B (one index is repeated three
        times; two give R, G and zeros for B; ``indices=None`` takes the first ``min(C, 3)``).
        ``"single"``: one channel index repeated to three channels.
        ``"adapt"``: all ``C`` channels, unchanged, for a model built with ``in_channels=C``.
    indices : tuple of int, optional
        Channel indices (0-based) for ``"rgb"`` / ``"single"``; must be empty for ``"adapt"``.

    Raises
    ------
    ValueError
        For an unknown mode or a wrong number of indices.
    """

    mode: str = "rgb"
    indices: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.mode not in _MODES:
            raise ValueError(f"mode: expected one of {_MODES}, got {self.mode!r}")
        idx = self.indices
        if idx is not None:
            idx = (idx,) if isinstance(idx, (int, np.integer)) else tuple(int(i) for i in idx)
            object.__setattr__(self, "indices", idx)
        n = None if idx is None else len(idx)
        if self.mode == "rgb" and n is not None and not 1 <= n <= 3:
            raise ValueError(f"indices: 'rgb' takes 1 to 3 channel indices, got {idx}")
        if self.mode == "single" and n != 1:
            raise ValueError(f"indices: 'single' takes exactly one channel index, got {idx}")
        if self.mode == "adapt" and n:
            raise ValueError(f"indices: 'adapt' uses all channels and takes no indices, got {idx}")
        if idx is not None and any(i < 0 for i in idx):
            raise ValueError(f"indices: channel indices must be >= 0, got {idx}")

    @classmethod
    def default_for(cls, n_channels: int) -> ChannelSpec:
        """Default spec: grey (1 channel) repeated, 2 channels to R, G, 3 channels as RGB.

        Raises
        ------
        ValueError
            For more than three channels, where the choice must be explicit.
        """
        if n_channels == 1:
            return cls("single", (0,))
        if n_channels <= 3:
            return cls("rgb", tuple(range(n_channels)))
        raise ValueError(
            f"channels: the image has {n_channels} channels; choose up to three with "
            f"ChannelSpec('rgb', (i, j, k)) / ('single', (i,)) or use ChannelSpec('adapt')"
        )

    def resolve(self, n_channels: int) -> ChannelSpec:
        """Return this spec with concrete indices for an image with ``n_channels`` channels.

        Raises
        ------
        ValueError
            If an index is out of range, naming the channel and the number of channels.
        """
        if self.mode == "rgb" and self.indices is None:
            return ChannelSpec("rgb", tuple(range(min(n_channels, 3))))
        for i in self.indices or ():
            if i >= n_channels:
                raise ValueError(
                    f"channels: channel index {i} is out of range; the image has {n_channels} "
                    f"channel(s) (valid indices 0..{n_channels - 1})"
                )
        return self

    def out_channels(self, n_channels: int) -> int:
        """Number of channels :meth:`apply` produces for ``n_channels`` input channels."""
        return n_channels if self.mode == "adapt" else 3

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Map a ``(Y, X, C)`` slice to ``(Y, X, C_out)`` (same dtype; zeros for a missing B).

        Raises
        ------
        ValueError
            If ``image`` is not 3-D or a channel index is out of range.
        """
        if image.ndim != 3:
            raise ValueError(f"image: expected a (Y, X, C) array, got shape {image.shape}")
        spec = self.resolve(image.shape[-1])
        if spec.mode == "adapt":
            return image
        idx = spec.indices
        if len(idx) == 1:
            idx = idx * 3
        out = image[..., list(idx)]
        if len(idx) == 2:
            out = np.concatenate([out, np.zeros_like(out[..., :1])], axis=-1)
        return np.ascontiguousarray(out)

    def signature(self) -> str:
        """A stable string naming the mode and the indices, e.g. ``"rgb:0,1,2"``."""
        idx = "auto" if self.indices is None else ",".join(str(i) for i in self.indices)
        return f"{self.mode}:{idx}" if self.mode != "adapt" else "adapt"
