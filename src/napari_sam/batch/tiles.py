"""The tiling options of ``embed``, ``segment`` and ``auto``: checked, planned, applied.

``--tile``, ``--halo``, ``--diameter`` and ``--no-tile`` are checked on their own before any
file is read (:func:`check_tile_options`); the tiling of a stack is planned from its slice
shape and the model's input size and object size (:func:`tiling_for`, without TensorFlow), and
:func:`make_predictor` builds the stack's predictor: a
:class:`~napari_sam.stacks.tiled_predictor.TiledPredictor` when the stack is tiled, else a
:class:`~napari_sam.stacks.stack_predictor.StackPredictor`.
"""

from __future__ import annotations

import sys

from .errors import InputError

__all__ = ["check_tile_options", "make_predictor", "size_hint", "tiling_for"]

_ARGS = {"tile": "--tile", "halo": "--halo", "diameter": "--diameter", "no_tile": "--no-tile"}


def _as_input_error(err: ValueError) -> InputError:
    from ..stacks.tiling_options import OptionError

    if isinstance(err, OptionError) and err.option in _ARGS.values():
        return InputError(err.option, err.message)
    return InputError("--tile", err)


def check_tile_options(settings) -> None:
    """The tiling options on their own (no image needed); InputError naming the option."""
    from ..stacks.tiling import check_tiling

    s = settings
    try:
        check_tiling(s.tile, s.halo, s.diameter, s.no_tile, names=_ARGS)
    except ValueError as err:
        raise _as_input_error(err) from None


def tiling_for(settings, view, config):
    """The tiling of ``view``'s slices for the model ``config`` (its input size) and the
    tiling options of ``settings`` (None: not tiled)."""
    from ..stacks.tiling import plan_tiling
    from ..weights.registry import model_entry

    s, cfg = settings, config
    diameter = s.diameter
    model_diameter = model_entry(s.model).object_diameter
    if diameter is None and s.tile is None and not s.no_tile and model_diameter is not None:
        size_hint(view, s.model, model_diameter)
    if diameter == "auto":
        from ..stacks.diameter import estimate_diameter

        diameter = estimate_diameter(view)
        if diameter is None:
            raise InputError("--diameter", "auto: found no objects to measure in the middle "
                             "slice; give the diameter in pixels")  # fmt: skip
        print(f"napari-sam: estimated object diameter: {diameter:.1f} px", file=sys.stderr)
    try:
        return plan_tiling(
            view.slice_shape, tuple(cfg.input_size), tile=s.tile, halo=s.halo,
            no_tile=s.no_tile, diameter=diameter, names=_ARGS,
            model_diameter=model_diameter,
        )  # fmt: skip
    except ValueError as err:
        raise _as_input_error(err) from None


def size_hint(view, model_name: str, model_diameter: float) -> str | None:
    """At native resolution, a one-line hint on stderr (returned too) when the objects of
    ``view``'s middle slice look much smaller or larger than the model's preferred size
    (:func:`~napari_sam.stacks.diameter.off_size_diameter`; None, and nothing said, when
    they do not or nothing was found to measure)."""
    from ..stacks.diameter import off_size_diameter

    d = off_size_diameter(view, model_diameter)
    if d is None:
        return None
    hint = (f"napari-sam: objects look about {d:.0f} px across; {model_name} works best at "
            f"{model_diameter:g} px: --diameter auto brings them to that size")  # fmt: skip
    print(hint, file=sys.stderr)
    return hint


def make_predictor(model, view, tiling, channels, normalization, store, encoder=None,
                   memory_budget: int | None = None, overwrite: bool = False):  # fmt: skip
    """The predictor of a stack (:func:`napari_sam.stacks.factory.make_predictor`; its
    memory budget unless given); the normalisation chosen is said on stderr (one line)."""
    from ..stacks import factory

    budget = {} if memory_budget is None else {"memory_budget": memory_budget}
    sp = factory.make_predictor(model, view, tiling, channels, normalization, store=store,
                                encoder=encoder, overwrite=overwrite, **budget)  # fmt: skip
    print(f"napari-sam: normalisation {sp.normalization.describe()}", file=sys.stderr)
    return sp
