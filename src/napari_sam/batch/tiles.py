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

__all__ = ["check_tile_options", "make_predictor", "resampled_diameter", "tiling_for"]

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
    tiling options of ``settings`` (None: not tiled).

    With none of ``--diameter``, ``--tile``, ``--halo`` and ``--no-tile``, a model that records its
    preferred object size gets the image resampled to it when the objects look far from it
    (:func:`resampled_diameter`); ``--diameter native`` keeps the default plan."""
    from ..stacks.tiling import plan_tiling
    from ..weights.registry import model_entry

    s, cfg = settings, config
    diameter = s.diameter
    model_diameter = model_entry(s.model).object_diameter
    chosen = diameter is not None or s.tile is not None or s.halo is not None or s.no_tile
    if not chosen and model_diameter is not None:
        diameter = resampled_diameter(view, s.model, model_diameter, tuple(cfg.input_size))
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


def resampled_diameter(view, model_name: str, model_diameter: float, input_size) -> float | None:
    """The object diameter the default settings resample ``view`` to: the estimate of its
    middle slice when the objects would reach the model outside
    :data:`~napari_sam.stacks.diameter.SIZE_HINT_RANGE` times its preferred size
    (:func:`~napari_sam.stacks.diameter.fit_to_model`), said in one line on stderr;
    None (native resolution, nothing said) when they would not, when nothing was found to
    measure, or when that size cannot be planned (said)."""
    from ..stacks.diameter import fit_to_model

    fit = fit_to_model(view, model_diameter, input_size)
    if fit is None:
        return None
    seen = "" if fit.seen == fit.diameter else f" ({fit.seen:.0f} px in the model's input)"
    said = f"napari-sam: objects look about {fit.diameter:.0f} px across{seen}; {model_name} "
    if fit.problem:
        print(f"{said}works best at {model_diameter:g} px, but {fit.problem}: not resampled",
              file=sys.stderr)  # fmt: skip
        return None
    print(f"{said}works best at {model_diameter:g} px: resampled to it (--diameter native: "
          "not resampled)", file=sys.stderr)  # fmt: skip
    return fit.diameter


def make_predictor(model, view, tiling, channels, normalization, store, encoder=None,
                   memory_budget: int | None = None, overwrite: bool = False,
                   outline="model"):  # fmt: skip
    """The predictor of a stack (:func:`napari_sam.stacks.factory.make_predictor`; its
    memory budget unless given; ``outline`` as there, clicks confined by the model's instance
    decoder where its outline settings say so); the normalisation chosen is said on stderr
    (one line)."""
    from ..segment.factory import make_guide
    from ..stacks import factory

    budget = {} if memory_budget is None else {"memory_budget": memory_budget}
    sp = factory.make_predictor(model, view, tiling, channels, normalization, store=store,
                                encoder=encoder, overwrite=overwrite, outline=outline,
                                guide=make_guide(model), **budget)  # fmt: skip
    print(f"napari-sam: normalisation {sp.normalization.describe()}", file=sys.stderr)
    return sp
