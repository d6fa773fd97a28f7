"""The one factory of automatic segmenters, for the command line, dask and napari.

A model with an instance decoder (micro-sam's) segments with it (AIS, an
:class:`~napari_sam.segment.ais.InstanceSegmenter` with the model's watershed settings); any
other with Meta's grid prompts (an :class:`~napari_sam.segment.automatic.AutomaticMaskGenerator`
with the model's thresholds, each replaced where given).
"""

from __future__ import annotations

__all__ = ["SegmenterError", "make_guide", "make_segmenter", "method_for"]


class SegmenterError(ValueError):
    """The method asked for cannot be used with this model (``method: ...``)."""


def method_for(method: str | None, has_decoder: bool) -> str:
    """``method`` (``"ais"`` or ``"amg"``), or its default: ``"ais"`` when the model has an
    instance decoder.

    Raises
    ------
    SegmenterError
        ``"ais"`` for a model without an instance decoder, or an unknown method.
    """
    method = method or ("ais" if has_decoder else "amg")
    if method not in ("ais", "amg"):
        raise SegmenterError(f"method: expected 'ais' or 'amg', got {method!r}")
    if method == "ais" and not has_decoder:
        raise SegmenterError("method: ais needs an instance decoder, and the model has none")
    return method


def make_segmenter(model, predictor, method: str | None = None, name: str | None = None,
                   points_per_side: int | None = None, **thresholds):  # fmt: skip
    """The automatic segmenter of ``model``.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model (``model.instance_decoder`` None or a decoder).
    predictor : SAMPredictor
        The prompted predictor the grid-prompt generator decodes with.
    method : {"ais", "amg"}, optional
        Default: ``"ais"`` when the model has an instance decoder (:func:`method_for`).
    name : str, optional
        The registered model whose settings apply; default ``model.cfg.name`` (Meta's
        thresholds and default watershed settings for a name not registered).
    points_per_side : int, optional
        Grid prompts per side (``"amg"``); default Meta's 32.
    **thresholds
        ``pred_iou_thresh``, ``stability_score_thresh`` (``"amg"``); None keeps the model's.

    Returns
    -------
    InstanceSegmenter or AutomaticMaskGenerator
    """
    from ..weights import auto_settings, list_models, model_entry

    name = name or model.cfg.name
    entry = model_entry(name) if name in list_models() else None
    if method_for(method, model.instance_decoder is not None) == "ais":
        from .ais import AisSettings, InstanceSegmenter

        ais = entry.ais if entry is not None else {}
        return InstanceSegmenter(model.instance_decoder, AisSettings().with_options(ais))
    from .automatic import AutomaticMaskGenerator

    options = {**auto_settings(name), **{k: v for k, v in thresholds.items() if v is not None}}
    if points_per_side is not None:
        options["points_per_side"] = points_per_side
    return AutomaticMaskGenerator(predictor, **options)


def make_guide(model, name: str | None = None):
    """The :class:`~napari_sam.segment.ais.DecoderGuide` of ``model`` (its instance decoder
    with its registered watershed settings) that the stack predictors confine clicks with
    (:func:`napari_sam.stacks.factory.make_predictor`'s ``guide``); None for a model without
    an instance decoder.

    Parameters
    ----------
    model : SegmentAnythingModel
    name : str, optional
        The registered model whose settings apply; default ``model.cfg.name``.
    """
    if model.instance_decoder is None:
        return None
    from ..weights import list_models, model_entry
    from .ais import AisSettings, DecoderGuide

    name = name or model.cfg.name
    ais = model_entry(name).ais if name in list_models() else {}
    return DecoderGuide(model.instance_decoder, model.cfg.input_size,
                        AisSettings().with_options(ais))  # fmt: skip
