"""The one factory of stack predictors: every app builds its predictors here.

The command line (:func:`napari_sam.batch.tiles.make_predictor`), the dask workers and the
napari session call :func:`make_predictor`, so that which kind a stack gets (see
:mod:`napari_sam.stacks.contract`) is decided once.
"""

from __future__ import annotations

from ..predict.outline import OutlineSettings, outline_settings
from ..weights.registry import model_entry
from .contract import InstanceGuide, SlicePredictor
from .stack_predictor import StackPredictor
from .store import MEMORY_BUDGET
from .tiled_predictor import TiledPredictor

__all__ = ["make_predictor", "model_outline"]


def make_predictor(model, view, tiling=None, channels=None, normalization=None, store=None,
                   encoder=None, memory_budget: int = MEMORY_BUDGET,
                   overwrite: bool = False, outline="model",
                   guide: InstanceGuide | None = None) -> SlicePredictor:  # fmt: skip
    """The predictor of a stack: a :class:`~napari_sam.stacks.tiled_predictor.TiledPredictor`
    when ``tiling`` is given, else a :class:`~napari_sam.stacks.stack_predictor.StackPredictor`.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model.
    view : StackView
        The stack.
    tiling : Tiling, optional
        The windows of a slice (see :func:`~napari_sam.stacks.tiling.plan_tiling`).
    channels, normalization, store, encoder, memory_budget, overwrite
        As for :class:`~napari_sam.stacks.stack_predictor.StackPredictor`.
    outline : OutlineSettings or None or "model"
        How prompted masks are redrawn from the image (:mod:`napari_sam.predict.outline`):
        ``"model"`` (default) the settings the model's registry entry records (none for
        Meta's and micro-sam's models), None SAM's masks unchanged.
    guide : InstanceGuide, optional
        The model's instance decoder as a guide
        (:func:`napari_sam.segment.factory.make_guide`): clicks are confined by its objects
        where the outline settings say so (``instances``).
    """
    kwargs = dict(store=store, memory_budget=memory_budget, overwrite=overwrite, encoder=encoder)
    if tiling is None:
        sp = StackPredictor(model, view, channels, normalization, **kwargs)
    else:
        sp = TiledPredictor(model, view, tiling, channels, normalization, **kwargs)
    sp.outline = model_outline(model) if isinstance(outline, str) else outline
    sp.guide = guide if sp.outline is not None and sp.outline.instances else None
    return sp


def model_outline(model) -> OutlineSettings | None:
    """The outline settings the registry records for ``model`` (by its configuration's name;
    None for an unregistered one, or one that records none)."""
    try:
        entry = model_entry(model.cfg.name)
    except ValueError:
        return None
    return outline_settings(entry.outline)
