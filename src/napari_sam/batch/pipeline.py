"""One way from an input file to a predictor, for every command (``auto``, ``segment``,
``embed``, ``train`` and the dask tasks).

The options every command shares are parsed and checked once (:func:`resolve`, before any
file is read or TensorFlow imported) into a frozen :class:`Resolved`; each file is opened
once (:func:`open_stack`: the view, its channels and the model configuration, built once);
the model is loaded once per process (:class:`ModelCache`); the predictor comes from the one
factory (:func:`napari_sam.stacks.factory.make_predictor`, through
:func:`napari_sam.batch.tiles.make_predictor`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import (
    check_dtype,
    check_model,
    check_weights,
    parse_channels,
    parse_normalization,
    parse_overrides,
)
from .runtime import import_tensorflow, load_model, open_input, resolve_channels

__all__ = ["ModelCache", "Opened", "Resolved", "open_input_of", "open_stack", "resolve"]


@dataclass(frozen=True)
class Resolved:
    """The shared options of a run, parsed and checked (see :func:`resolve`).

    Attributes
    ----------
    model : str
        The registered model.
    overrides : tuple of (str, value)
        ``--override`` values, parsed.
    weights, decoder : Path or None
        Checkpoint files (None: the model's own).
    channels : ChannelSpec or None
        ``--channels`` (None: the default of the image's number of channels).
    normalization : Normalization
        ``--normalization``, to be fitted on each stack.
    axes : str or None
        ``--axes``.
    dtype : str
        ``--dtype`` of the image encoder: auto, float32 or bfloat16.
    """

    model: str
    overrides: tuple[tuple[str, Any], ...]
    weights: Path | None
    decoder: Path | None
    channels: Any
    normalization: Any
    axes: str | None
    dtype: str = "auto"

    @property
    def override_dict(self) -> dict:
        """The overrides as keyword arguments."""
        return dict(self.overrides)

    def config(self, in_channels: int):
        """The model configuration for images of ``in_channels`` channels (built here, once
        per file; InputError naming ``--override`` where the values do not fit)."""
        return check_model(self.model, in_channels, self.override_dict)


def resolve(settings, decoder: str | None = None) -> Resolved:
    """Parse and check the options every command shares, once (InputError naming the first
    bad one): ``--model`` with ``--override``, ``--weights``, ``--decoder``, ``--channels``,
    ``--normalization``."""
    s = settings
    channels = parse_channels(s.channels)
    normalization = parse_normalization(s.normalization)
    overrides = parse_overrides(s.override)
    check_model(s.model, 3, overrides)
    weights = check_weights(s.weights)
    decoder_path = check_weights(decoder, "--decoder")
    check_dtype()
    return Resolved(s.model, tuple(overrides.items()), weights, decoder_path, channels,
                    normalization, s.axes, getattr(s, "dtype", "auto"))  # fmt: skip


@dataclass
class Opened:
    """An input opened for the run: its view, channel mapping and the model configuration."""

    view: Any
    channels: Any
    in_channels: int
    config: Any


def open_input_of(resolved: Resolved, inp: Path) -> Opened:
    """Open ``inp`` (checked readable) with its channel mapping and model configuration; the
    caller closes ``opened.view`` (:func:`open_stack` does it on leaving)."""
    view = open_input(Path(inp), resolved.axes)
    try:
        channels = resolve_channels(resolved.channels, view)
        in_channels = channels.out_channels(view.n_channels)
        return Opened(view, channels, in_channels, resolved.config(in_channels))
    except BaseException:
        view.close()
        raise


@contextmanager
def open_stack(resolved: Resolved, inp: Path) -> Iterator[Opened]:
    """Open ``inp`` once (see :func:`open_input_of`); closed on leaving."""
    opened = open_input_of(resolved, inp)
    with opened.view:
        yield opened


@dataclass
class ModelCache:
    """The model of a process, loaded on first use and reused for the next files (and the
    encoder, whose compiled graphs the next predictors share).

    Attributes
    ----------
    loads : int
        How many times a model was loaded (1 per process in a run).
    """

    model: Any = None
    encoder: Any = None
    loads: int = 0

    def model_for(self, resolved: Resolved, opened: Opened):
        """The model (loaded now with TensorFlow if this process has none)."""
        if self.model is None:
            import_tensorflow()
            self.model = load_model(resolved.model, resolved.weights, opened.in_channels,
                                    resolved.override_dict, resolved.decoder,
                                    config=opened.config, dtype=resolved.dtype)  # fmt: skip
            self.loads += 1
        return self.model
