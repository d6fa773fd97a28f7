"""GUI-free logic of the napari plugin: layer geometry, prompts, preview and propagation.

Nothing here imports napari or Qt, so it can be tested and reused without a display. All
coordinates are *label space* coordinates: the image layer's data coordinates without its
channel axis (and without the RGB axis of an RGB layer), so ``label_shape`` is the shape of
the preview and output Labels layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..segment.propagation import propagation_prompts as core_propagation_prompts
from ..segment.propagation import refine_prompts, slice_window
from ..stacks.channels import ChannelSpec
from ..stacks.view import SLICE_AXES, StackView
from ._tiles import plan_for

__all__ = ["Geometry", "ObjectPrompt", "Prediction", "Session", "propagation_prompts"]


@dataclass(frozen=True)
class Geometry:
    """Axes of an image layer's data.

    Parameters
    ----------
    shape : tuple of int
        Shape of the image layer's data.
    channel_axis : int, optional
        Axis holding channels; must be the first axis (napari aligns layers on their trailing
        axes, so the Labels layers line up with the image only then). ``None``: no channels.
    rgb : bool
        An RGB(A) layer: the last axis holds the colour samples.

    Raises
    ------
    ValueError
        If the data has fewer than two spatial axes or the channel axis is not the first one.
    """

    shape: tuple[int, ...]
    channel_axis: int | None = None
    rgb: bool = False

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        n_spatial = len(shape) - (self.channel_axis is not None) - bool(self.rgb)
        if n_spatial < 2:
            raise ValueError(
                f"image layer: data of shape {shape} has no two spatial (Y, X) axes left "
                f"after the channel axis; SAM needs 2-D slices"
            )
        if self.channel_axis is not None:
            ax = self.channel_axis % len(shape)
            if self.rgb or ax != 0 or len(shape) < 3:
                raise ValueError(
                    f"channel axis: {self.channel_axis} of shape {shape} must be the first axis "
                    f"of a stack (e.g. C, Z, Y, X) for the labels to align with the image; "
                    f"transpose the data or choose 'none'"
                )
            object.__setattr__(self, "channel_axis", 0)
        if len(shape) - (self.channel_axis is not None) - bool(self.rgb) > 2 + len(SLICE_AXES):
            raise ValueError(f"image layer: too many axes in shape {shape}")

    @property
    def n_slice_dims(self) -> int:
        """Number of axes that index 2-D slices (T, Z, ...)."""
        return len(self.label_shape) - 2

    @property
    def axes(self) -> str:
        """The :class:`~napari_sam.stacks.StackView` axes string of the image data."""
        n = self.n_slice_dims
        letters = "Z" if n == 1 else ("TZ" if n == 2 else SLICE_AXES[:n])
        return ("C" if self.channel_axis is not None else "") + letters + "YX" + "S" * self.rgb

    @property
    def label_shape(self) -> tuple[int, ...]:
        """Shape of Labels layers that match the image."""
        shape = self.shape[1:] if self.channel_axis is not None else self.shape
        return shape[:-1] if self.rgb else shape

    @property
    def n_channels(self) -> int:
        """Channels of one slice."""
        if self.rgb:
            return self.shape[-1]
        return self.shape[0] if self.channel_axis is not None else 1


@dataclass
class ObjectPrompt:
    """Prompts of one object on one slice, in SAM's pixel coordinates (x = column, y = row)."""

    points: np.ndarray | None = None  # (M, 2) x, y
    labels: np.ndarray | None = None  # (M,) 1 positive, 0 negative
    box: np.ndarray | None = None  # (4,) x0, y0, x1, y1
    mask_logits: np.ndarray | None = None  # (1, H', W') low-resolution logits
    refines: int | None = None  # Refine: the label whose mask is the mask prompt
    clicks: tuple | None = None  # Refine: the (points, labels) clicked on top of it


@dataclass
class Prediction:
    """Candidate masks of one object: ``masks`` (K, H, W), ``scores`` (K,), ``logits``.

    ``window`` ``(y0, y1, x0, x1)``: the masks cover only that part of the slice (a tiled
    image); ``None``: they cover the whole slice.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    choice: int = 0
    window: tuple[int, int, int, int] | None = None
    prompt: ObjectPrompt | None = None  # what it was predicted from (for the record)
    multimask: bool = False  # several candidates were asked for

    @property
    def mask(self) -> np.ndarray:
        """The chosen mask (H, W)."""
        return self.masks[self.choice]

    @property
    def score(self) -> float:
        """Predicted IoU of the chosen mask."""
        return float(self.scores[self.choice])

    def cycle(self) -> None:
        """Choose the next candidate mask."""
        self.choice = (self.choice + 1) % len(self.masks)


def split_prompts(
    points_rc: np.ndarray, positive: np.ndarray, boxes_rc: list[np.ndarray], slice_shape,
    one_per_click: bool = False,
) -> tuple[list[ObjectPrompt], int]:  # fmt: skip
    """Group one slice's prompts into objects.

    Parameters
    ----------
    points_rc : ndarray
        (M, 2) points as (row, col), as napari gives them.
    positive : ndarray
        (M,) booleans: positive (foreground) or negative points.
    boxes_rc : list of ndarray
        Rectangles, each (4, 2) corner vertices as (row, col).
    slice_shape : tuple of int
        (H, W) of the slice; points outside it are dropped.
    one_per_click : bool
        Each positive point outside the boxes is an object of its own (with the negative
        points outside the boxes), for counting many objects quickly; by default they are
        one object together (SAM's rule: the points of one prompt describe one object).

    Returns
    -------
    objects : list of ObjectPrompt
        One object per box (with the points inside it), plus one for the points outside every
        box if any of them is positive (one per positive point with ``one_per_click``).
    dropped : int
        Number of points outside the image.
    """
    h, w = slice_shape
    pts = np.asarray(points_rc, np.float64).reshape(-1, 2)
    pos = np.asarray(positive, bool).reshape(-1)
    inside = (pts[:, 0] >= -0.5) & (pts[:, 0] < h - 0.5) & (pts[:, 1] >= -0.5)
    inside &= pts[:, 1] < w - 0.5
    dropped = int((~inside).sum())
    xy = np.clip(pts[inside][:, ::-1], 0, (w - 1, h - 1))  # napari (row, col) -> SAM (x, y)
    pos = pos[inside]
    used = np.zeros(len(xy), bool)
    objects = []
    for verts in boxes_rc:
        v = np.asarray(verts, np.float64).reshape(-1, 2)
        y0, x0 = np.clip(v.min(0), 0, None)
        y1, x1 = np.minimum(v.max(0), (h - 1, w - 1))
        if x1 <= x0 or y1 <= y0:
            continue
        within = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        used |= within
        obj = ObjectPrompt(box=np.array([x0, y0, x1, y1], np.float32))
        if within.any():
            obj.points, obj.labels = xy[within], pos[within].astype(np.float32)
        objects.append(obj)
    rest = ~used
    if one_per_click:
        negative = rest & ~pos
        for i in np.flatnonzero(rest & pos):
            keep = negative.copy()
            keep[i] = True
            objects.append(ObjectPrompt(xy[keep], pos[keep].astype(np.float32)))
    elif pos[rest].any():
        objects.append(ObjectPrompt(xy[rest], pos[rest].astype(np.float32)))
    return objects, dropped


def propagation_prompts(mask: np.ndarray) -> ObjectPrompt:
    """Prompts for the next slice from an object's mask on this one (see
    :func:`napari_sam.segment.propagation.propagation_prompts`)."""
    return ObjectPrompt(*core_propagation_prompts(mask))


class Session:
    """A stack predictor on an image layer's data: tiled when the slices are large.

    A slice more than 1.5 times the model input (:func:`~napari_sam.stacks.tiling.plan_tiling`)
    gets a :class:`~napari_sam.stacks.tiled_predictor.TiledPredictor` (tiles at native
    resolution, embedded on demand; predictions carry their ``window``), any other a
    :class:`~napari_sam.stacks.stack_predictor.StackPredictor`. The data is read lazily, by
    region (numpy, memory-mapped, dask and zarr arrays, e.g. level 0 of a multiscale layer).

    Parameters
    ----------
    model : SegmentAnythingModel
        The model.
    data : array-like
        The image layer's data (level 0 of a multiscale layer).
    geometry : Geometry
        Its axes.
    channels : ChannelSpec, optional
        Channel mapping; default :meth:`ChannelSpec.default_for`.
    store : str or os.PathLike, optional
        Embedding cache directory; ``None`` keeps embeddings in memory.
    diameter : float, optional
        The typical object diameter in image pixels: slices are then tiled so that objects
        reach the model at ``model_diameter``, its preferred size (None: native resolution).
    model_diameter : float, optional
        The model's preferred object size (:attr:`ModelEntry.object_diameter
        <napari_sam.weights.registry.ModelEntry.object_diameter>`); needed with ``diameter``.
    outline : "model" or None
        ``"model"``: masks drawn as the model's registry entry says (its outline settings,
        clicks confined by its instance decoder; :mod:`napari_sam.predict.outline`), None:
        SAM's masks as decoded.
    """

    def __init__(self, model, data, geometry: Geometry, channels=None, store=None,
                 diameter=None, model_diameter=None, outline="model"):  # fmt: skip
        from ..segment.factory import make_guide  # TensorFlow: imported on first use
        from ..stacks.factory import make_predictor

        self.geometry = geometry
        channels = channels or ChannelSpec.default_for(geometry.n_channels)
        view = StackView(data, geometry.axes)
        tiling = plan_for(view.slice_shape, model.cfg.input_size, diameter, model_diameter)
        self.sp = make_predictor(model, view, tiling, channels, store=store, outline=outline,
                                 guide=make_guide(model))  # fmt: skip
        self.slice_shape = self.sp.view.slice_shape

    @property
    def tiling(self):
        """The windows of a slice (None: the whole slice at once)."""
        return self.sp.tiling

    @property
    def tiled(self) -> bool:
        """Whether the slices are tiled (predictions then carry a window)."""
        return self.sp.unit == "tile"

    def embed(self, index) -> None:
        """Make sure slice ``index`` (tuple over the slice axes) has an embedding (every tile
        of it, when tiled)."""
        for t in range(self.sp.windows):
            self.sp.tile_embedding(tuple(index), t)

    def has_embedding(self, index) -> bool:
        """Whether slice ``index`` has its embedding ready (see :meth:`SlicePredictor.
        has_embedding <napari_sam.stacks.contract.SlicePredictor.has_embedding>`)."""
        return self.sp.has_embedding(tuple(index))

    def ready_tiles(self, index) -> list[int]:
        """The windows of slice ``index`` whose embedding is in memory or in the store."""
        return np.nonzero(self.sp.ready_tiles(tuple(index)))[0].tolist()

    def warm_up(self) -> None:
        """Trace what the first click would (on a tiled image: the encoder and both decoder
        graphs, so that the first click costs one tile's embedding only)."""
        self.sp.warm_up()

    def prepare_click(self, index) -> None:
        """Make the first click on slice ``index`` as quick as the next ones: embed what a
        click at its centre needs (the slice, or the tile there) and trace both decoding
        graphs on it (the predictions are thrown away)."""
        h, w = self.slice_shape
        point = ObjectPrompt(np.array([[w / 2, h / 2]], np.float32), np.ones(1, np.float32))
        for multimask in (True, False):
            self.predict(tuple(index), point, multimask)

    def precompute(self, progress=None, cancel=None, batch_size: int = 1):
        """Embed every slice, or every tile of every slice (see :meth:`StackPredictor.precompute
        <napari_sam.stacks.stack_predictor.StackPredictor.precompute>`)."""
        return self.sp.precompute(progress=progress, cancel=cancel, batch_size=batch_size)

    def predict(self, index, obj: ObjectPrompt, multimask: bool = True) -> Prediction:
        """Candidate masks of one object on slice ``index``, best predicted IoU first chosen.

        ``multimask`` applies to ambiguous prompts, a single point alone (SAM's advice, and
        what ``napari-sam segment`` does); other prompts get SAM's single mask. On a tiled
        image the masks cover the window they were decoded on (mask prompts are left out).
        """
        single_point = (
            obj.box is None
            and obj.mask_logits is None
            and (obj.points is not None and len(obj.points) == 1)
        )
        has_points = obj.points is not None and len(obj.points)
        masks = obj.mask_logits if self.sp.supports_mask_prompts else None
        if not has_points and obj.box is None and masks is None:
            raise ValueError("prompt: an object needs points, a box or a mask")
        masks, scores, logits, window = self.sp.predict_window(
            tuple(index), obj.points if has_points else None, obj.labels if has_points else None,
            obj.box, multimask and single_point, masks=masks,
        )  # fmt: skip
        best = self.sp.best_candidate(masks, scores)  # window None: the whole slice
        return Prediction(masks, scores, logits, best, slice_window(window, self.slice_shape),
                          obj, multimask and single_point)  # fmt: skip

    def mask_prompt(self, index, mask: np.ndarray, label: int, points=None,
                    labels=None) -> ObjectPrompt:  # fmt: skip
        """A prompt refining label ``label`` (its ``mask``): its box, a point inside, the
        clicks ``points`` / ``labels``, and (untiled) its mask as low-res logits (see
        :func:`napari_sam.segment.propagation.refine_prompts`)."""
        prompt = ObjectPrompt(*refine_prompts(self.sp, index, mask, points, labels))
        prompt.refines, prompt.clicks = int(label), (points, labels)
        return prompt

    def propagate(self, index, mask: np.ndarray, *args, **kwargs):
        """Follow an object from slice ``index`` through its neighbours along one slice axis:
        :func:`napari_sam.segment.propagation.propagate` on this session's predictor (the
        same options; it yields ``(index, mask, window)`` per slice)."""
        from ..segment.propagation import propagate

        return propagate(self.sp, index, mask, *args, **kwargs)
