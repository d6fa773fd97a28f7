"""Plain values and worker functions of the annotator (no napari, no Qt).

The functions a worker runs off the Qt thread, :func:`build_session`, :func:`embed_slices` and
:meth:`PropagationJob.run`, take plain values and return (or yield) their results; they never
touch an :class:`~napari_sam._napari.annotator.Annotator`. "Segment everything"'s body and its
linked write are in :mod:`._everything`.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..segment.painting import write_objects
from ..weights.defaults import WIDGET_MODEL
from ._session import Geometry, ObjectPrompt, Session
from ._tiles import full_window, tile_states, tiles_around

__all__ = ["Built", "Committed", "Previewed", "PropagationJob", "SessionSpec", "Settings",
           "build_session", "embed_one", "embed_slices", "made_by", "model_diameter",
           "model_outline_of", "preview_job", "record_entry", "refine_prompt",
           "with_session", "write_objects"]  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """The widget's controls read into plain values (on the Qt thread).

    Parameters
    ----------
    model_name : str
        Registered model name (:func:`napari_sam.weights.list_models`).
    checkpoint : str
        Optional checkpoint file ('' for the model's default weights).
    cache : str
        Embedding cache folder ('' keeps embeddings in memory).
    multimask : bool
        Several candidate masks for a single-point prompt.
    overwrite : bool
        Commits and propagation overwrite existing labels.
    stop_iou : float
        Propagation stops below this IoU with the previous slice.
    limits : tuple of int
        Inclusive range of slices propagation may reach.
    prop_axis : int
        Slice axis propagation follows (clipped to the image's slice axes).
    diameter : float, optional
        The typical object diameter in image pixels (None: native resolution).
    sam_masks : bool
        Keep SAM's masks as decoded, where the model records an outline of its own (as
        ``napari-sam segment --sam-masks``).
    """

    model_name: str = WIDGET_MODEL
    checkpoint: str = ""
    cache: str = ""
    multimask: bool = True
    overwrite: bool = False
    stop_iou: float = 0.5
    limits: tuple[int, int] = (0, 99999)
    prop_axis: int = 0
    diameter: float | None = None
    sam_masks: bool = False


@dataclass(frozen=True)
class SessionSpec:
    """Everything a worker needs to make a :class:`Session`: plain values only.

    Parameters
    ----------
    data : array-like
        The image layer's data (compared by identity in the session key).
    geometry : Geometry
        Its axes.
    channels : ChannelSpec
        The resolved channel mapping.
    store : str, optional
        Embedding cache directory; ``None`` keeps embeddings in memory.
    model_name, checkpoint : str
        The model to create when the annotator has none for these settings.
    diameter : float, optional
        The typical object diameter in image pixels (None: native resolution; see
        :class:`Session`).
    sam_masks : bool
        SAM's masks as decoded, not redrawn as the model's outline settings say.
    """

    data: Any = field(compare=False, repr=False)
    geometry: Geometry
    channels: Any
    store: str | None = None
    model_name: str = WIDGET_MODEL
    checkpoint: str = ""
    diameter: float | None = None
    sam_masks: bool = False

    @property
    def in_channels(self) -> int:
        """Input channels of the model (after the channel mapping)."""
        return self.channels.out_channels(self.geometry.n_channels)


@dataclass(frozen=True)
class Built:
    """A worker's result: the model and session it made, and their keys."""

    model: Any
    model_key: Any
    session: Session
    key: tuple


def model_diameter(model_name: str) -> float | None:
    """The preferred object size of a registered model, in its input pixels (None: the model
    records none, and takes no object diameter)."""
    from ..weights.registry import model_entry

    return model_entry(model_name).object_diameter


def model_outline_of(model_name: str) -> bool:
    """Whether registered model ``model_name`` records an outline of its own (its prompted
    masks redrawn: :mod:`napari_sam.predict.outline`)."""
    from ..weights.registry import list_models, model_entry

    return model_name in list_models() and bool(model_entry(model_name).outline)


def build_session(spec: SessionSpec, model=None, model_key=None, key=None) -> Built:
    """Make the model (unless given) and the session of ``spec`` (run in a worker).

    Parameters
    ----------
    spec : SessionSpec
        The image data, geometry, channels and store.
    model : SegmentAnythingModel, optional
        A model to reuse; ``None`` creates ``spec.model_name`` with ``spec.checkpoint``.
    model_key, key : optional
        The keys of the model and the session (see :meth:`Annotator.keys`), passed through.

    Returns
    -------
    Built
        The model, the new session and the keys, for :meth:`Annotator.adopt`.

    Notes
    -----
    It calls :func:`gc.freeze` once the model is there and again at the end: the objects
    made so far (the model's, napari's) are left out of later garbage collections, whose
    full passes would otherwise take 0.2-0.4 s with the GIL held and stall the Qt event loop.
    """
    if model is None:
        from ..weights import create_model

        pretrained = spec.checkpoint or True
        model = create_model(spec.model_name, pretrained=pretrained, in_channels=spec.in_channels,
                             dtype="auto")  # bfloat16 only where native and faster
    # A full garbage collection of the objects TensorFlow, Keras and napari made (0.2-0.4 s)
    # holds the GIL, stalling the Qt thread: move them out of the collector's reach.
    gc.freeze()
    session = Session(model, spec.data, spec.geometry, spec.channels, spec.store,
                      spec.diameter, model_diameter(spec.model_name),
                      outline=None if spec.sam_masks else "model")  # fmt: skip
    session.warm_up()  # a tiled image: the first click then costs one tile only
    gc.freeze()
    return Built(model, model_key, session, key)


def embed_slices(session: Session, indices: Sequence, cancel: Callable[[], bool] | None = None):
    """Embed slices one by one (a generator, run in a worker).

    Yields
    ------
    int
        Number of slices embedded so far.

    Returns
    -------
    int
        Number of slices embedded (fewer than ``len(indices)`` if ``cancel()`` became true).
    """
    for n, index in enumerate(indices):
        if cancel is not None and cancel():
            return n
        session.embed(index)
        yield n + 1
    return len(indices)


@dataclass(frozen=True)
class Committed:
    """What a commit changed: the slice, the ids written and the number of pixels."""

    index: tuple
    ids: list
    pixels: int


@dataclass(frozen=True)
class PropagationJob:
    """A propagation to run: the object (``label``, ``mask`` on slice ``index``) and settings."""

    index: tuple
    mask: np.ndarray = field(compare=False, repr=False)
    label: int
    axis: int
    stop_iou: float = 0.5
    limits: tuple[int, int] | None = None
    overwrite: bool = False

    def run(self, session: Session, cancel: Callable[[], bool] | None = None) -> Iterator:
        """The slices ``(index, mask)`` of the object (a generator, run in a worker)."""
        yield from session.propagate(self.index, self.mask, self.axis, self.stop_iou,
                                     self.limits, cancel=cancel)  # fmt: skip


def with_session(session, build, body):
    """A worker's function: ``body(session)``, making the session first if needed.

    Parameters
    ----------
    session : Session, optional
        The session; ``None``: ``build()`` makes it and the :class:`Built` is yielded first
        (for :meth:`Annotator.adopt` on the Qt thread).
    build : callable
        :meth:`Annotator.builder`'s function (plain values).
    body : callable
        A generator function of the session; its items are yielded and its result returned.
    """
    if session is None:
        built = build()
        yield built
        session = built.session
    return (yield from body(session))


@dataclass(frozen=True)
class Previewed:
    """A preview worker's result: the session, and on a tiled image the predictions and
    ``{tile: ready}`` of the tiles around them (``None`` untiled: predict on the Qt thread)."""

    session: Session
    predictions: list | None = None
    tiles: dict | None = field(default=None, compare=False, repr=False)


def record_entry(pred, label: int, overwrite: bool) -> dict:
    """The record of a committed object (see :class:`napari_sam.io.prompt_log.PromptLog`):
    the clicks and box it was predicted from, the candidate chosen, the commit's options."""
    entry = {"id": int(label), "overwrite": bool(overwrite), "multimask": bool(pred.multimask)}
    p = pred.prompt
    if p is None:
        return entry
    points, labels = p.clicks if p.refines is not None else (p.points, p.labels)
    if p.refines is not None:
        entry["refine"] = True  # its mask on the slice then was the mask prompt
    elif p.box is not None:
        entry["box"] = [float(v) for v in np.ravel(p.box)]
    if points is not None and len(points):
        entry["points"] = np.asarray(points, np.float64).reshape(-1, 2).tolist()
        entry["labels"] = [int(v) for v in np.ravel(labels)]
    if pred.multimask:
        entry["choice"] = int(pred.choice)
    return entry


def made_by(session, model_name: str) -> dict:
    """The ``made_by`` of the widget's record (as ``napari-sam segment`` writes and checks
    it): the model and the hash of its weights, channels, normalisation, tiling, outline."""
    from .. import __version__
    from ..predict.outline import describe_outline
    from ..stacks.tiling import describe_tiling

    sp = session.sp
    return {
        "command": "napari", "version": __version__, "model": model_name,
        "weights_hash": sp.encoder.weights_hash, "encoder_dtype": sp.model.encoder_dtype,
        "channels": sp.channels.signature(),
        "normalization": sp.normalization.describe(),
        "tiling": describe_tiling(sp.tiling), "outline": describe_outline(sp.outline),
    }  # fmt: skip


def refine_prompt(session, objects, mask, index, label: int) -> ObjectPrompt:
    """The prompt refining label ``label`` (its ``mask`` on slice ``index``), plus the points
    of the first of ``objects``."""
    clicks = (objects[0].points, objects[0].labels) if objects else (None, None)
    return session.mask_prompt(index, mask, label, *clicks)


def preview_job(session, index, objects, multimask=True, refine=None):
    """A worker's body for a preview (a generator): embed what it needs, off the Qt thread.

    Untiled, it embeds slice ``index`` and returns ``Previewed(session)`` (decoding is quick
    and done on the Qt thread). Tiled, it embeds the tile(s) the prompts need (on demand, as
    :meth:`TiledPredictor.predict_window
    <napari_sam.stacks.tiled_predictor.TiledPredictor.predict_window>` asks) and decodes
    too, returning the predictions and the states of the tiles around them.

    Parameters
    ----------
    refine : tuple, optional
        ``(labels, label)``: refine ``label`` of slice ``index`` of ``labels`` (its mask is
        the prompt, with the points of the first object).
    """
    yield from ()
    if not session.sp.embeds_per_prompt:  # the whole slice first; decoding then reads nothing
        session.embed(index)
        return Previewed(session)
    if refine is not None:
        labels, label = refine
        objects = [refine_prompt(session, objects, np.asarray(labels[index]) == label, index,
                                 label)]  # fmt: skip
    preds = [session.predict(index, o, multimask) for o in objects]
    near = tiles_around(session.tiling, [full_window(p.mask, p.window) for p in preds])
    return Previewed(session, preds, tile_states(session, index, near))


def embed_one(session, index):
    """A worker's body: embed slice ``index``; return the session (a generator)."""
    yield from ()
    session.embed(index)
    return session
