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

from ..weights.defaults import WIDGET_MODEL
from ._session import Geometry, ObjectPrompt, Session
from ._tiles import full_window, tile_states, tiles_around

__all__ = ["Built", "Committed", "Previewed", "PropagationJob", "SessionSpec", "Settings",
           "build_session", "embed_one", "embed_slices", "preview_job", "refine_prompt",
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
    """

    model_name: str = WIDGET_MODEL
    checkpoint: str = ""
    cache: str = ""
    multimask: bool = True
    overwrite: bool = False
    stop_iou: float = 0.5
    limits: tuple[int, int] = (0, 99999)
    prop_axis: int = 0


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
    """

    data: Any = field(compare=False, repr=False)
    geometry: Geometry
    channels: Any
    store: str | None = None
    model_name: str = WIDGET_MODEL
    checkpoint: str = ""

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
    session = Session(model, spec.data, spec.geometry, spec.channels, spec.store)
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


def write_objects(labels, index, masks, ids, overwrite: bool, clear_id: int | None = None,
                  setitem: Callable | None = None, window=None) -> int:  # fmt: skip
    """Write 2-D ``masks`` of slice ``index`` of ``labels`` with ``ids`` in one assignment.

    Pixels that already hold another label are kept unless ``overwrite``; ``clear_id`` (a
    refined object) is removed from the slice where its new mask does not reach.

    Parameters
    ----------
    labels : array-like
        The labels (e.g. a Labels layer's ``data``); read, and written unless ``setitem``.
    index : tuple of int
        The slice, over the leading (slice) axes.
    masks, ids : sequence
        Boolean (H, W) masks and their label values.
    overwrite : bool
        Overwrite pixels of other labels.
    clear_id : int, optional
        Label replaced by the (single) mask.
    setitem : callable, optional
        ``setitem(key, values)`` doing the write (a Labels layer's ``data_setitem``, which
        makes it one undo step); default ``labels[key] = values``.
    window : tuple of int, optional
        ``(y0, y1, x0, x1)``: the masks cover only that part of the slice, and only it is
        read and written (``clear_id`` is then removed within the window only).

    Returns
    -------
    int
        Number of pixels written.
    """
    y0, y1, x0, x1 = window if window is not None else (0, None, 0, None)
    plane = np.asarray(labels[(*tuple(index), slice(y0, y1), slice(x0, x1))])
    value = np.zeros(plane.shape, plane.dtype)
    claimed = np.zeros(plane.shape, bool)
    for mask, i in zip(masks, ids, strict=True):
        free = mask & ~claimed & ((plane == 0) | (plane == i) | overwrite)
        if clear_id is not None:
            free |= mask & ~claimed & (plane == clear_id)
        value[free] = i
        claimed |= free
    change = claimed | ((plane == clear_id) if clear_id is not None else False)
    rows, cols = np.nonzero(change)
    if not len(rows):
        return 0
    full = tuple(np.full(len(rows), i) for i in index) + (rows + y0, cols + x0)
    if setitem is None:
        labels[full] = value[rows, cols]
    else:
        setitem(full, value[rows, cols])
    return len(rows)


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


def refine_prompt(session, objects, mask, index) -> ObjectPrompt:
    """The prompt refining the object ``mask`` of slice ``index``, plus the points of the
    first of ``objects``."""
    prompt = session.mask_prompt(index, mask)
    if objects and objects[0].points is not None:
        prompt.points = np.concatenate([prompt.points, objects[0].points])
        prompt.labels = np.concatenate([prompt.labels, objects[0].labels])
    return prompt


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
        objects = [refine_prompt(session, objects, np.asarray(labels[index]) == label, index)]
    preds = [session.predict(index, o, multimask) for o in objects]
    near = tiles_around(session.tiling, [full_window(p.mask, p.window) for p in preds])
    return Previewed(session, preds, tile_states(session, index, near))


def embed_one(session, index):
    """A worker's body: embed slice ``index``; return the session (a generator)."""
    yield from ()
    session.embed(index)
    return session
