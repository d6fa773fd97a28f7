"""napari layer helpers: prompt layers, reading prompts of a slice, writing labels with undo."""

from __future__ import annotations

import numpy as np

POSITIVE, NEGATIVE = "lime", "magenta"
PREFIX = "SAM "
#: Slices of more pixels than this (4096 x 4096) get a windowed preview layer.
LARGE_SLICE = 1 << 24


def spatial_transform(image, geometry):
    """``scale`` and ``translate`` of the image layer over the label axes."""
    n = len(geometry.label_shape)
    return tuple(image.scale[-n:]), tuple(image.translate[-n:])


def check_aligned(layer, image, geometry, what: str) -> None:
    """Raise a ValueError naming ``what`` if ``layer`` is not on the image's label grid."""
    n = len(geometry.label_shape)
    scale, translate = spatial_transform(image, geometry)
    if layer.ndim != n:
        raise ValueError(
            f"{what} layer {layer.name!r} has {layer.ndim} dimensions; the image "
            f"{image.name!r} has {n} (without channels)"
        )
    if not (np.allclose(layer.scale, scale) and np.allclose(layer.translate, translate)):
        raise ValueError(
            f"{what} layer {layer.name!r} has scale {tuple(layer.scale)} / translate "
            f"{tuple(layer.translate)} but image {image.name!r} has {scale} / {translate}; "
            f"prompts must be drawn on the image's pixel grid"
        )


def check_labels(layer, image, geometry) -> None:
    """Raise a ValueError if a Labels layer does not match the image (shape and grid)."""
    if tuple(layer.data.shape) != geometry.label_shape:
        raise ValueError(
            f"labels layer {layer.name!r} has shape {tuple(layer.data.shape)} but the image "
            f"{image.name!r} needs {geometry.label_shape}; choose or create a matching one"
        )
    check_aligned(layer, image, geometry, "labels")


def windowed(image, geometry) -> bool:
    """Whether ``image`` gets a windowed preview layer (multiscale, or over
    :data:`LARGE_SLICE` pixels a slice): one covering the previewed window only."""
    h, w = geometry.label_shape[-2:]
    return bool(getattr(image, "multiscale", False)) or h * w > LARGE_SLICE


def make_prompt_layers(viewer, image, geometry):
    """Add the points, boxes, preview and output layers for ``image``; return them.

    The preview layer is windowed (see :func:`windowed` and :func:`show_window`) for a
    multiscale or large image: a full-size preview would be redrawn whole at every click;
    the output labels are then uint16 (napari draws a 16384 x 16384 int32 layer in 10 s,
    a uint16 one in 0.5 s).
    """
    scale, translate = spatial_transform(image, geometry)
    n = len(geometry.label_shape)
    kw = {"scale": scale, "translate": translate}
    large = windowed(image, geometry)  # uint16 labels: napari draws int32 ones slowly
    labels = viewer.add_labels(
        np.zeros(geometry.label_shape, np.uint16 if large else np.int32), name=PREFIX + "labels",
        **kw,
    )  # fmt: skip
    shape = (1,) * n if large else geometry.label_shape
    preview = viewer.add_labels(
        np.zeros(shape, np.int32), name=PREFIX + "preview", opacity=0.5, **kw
    )
    boxes = viewer.add_shapes(
        ndim=n, name=PREFIX + "boxes", edge_color="yellow", face_color="transparent",
        edge_width=1.5, **kw,
    )  # fmt: skip
    points = viewer.add_points(
        np.zeros((0, n)), ndim=n, name=PREFIX + "points", features={"positive": np.zeros(0, bool)},
        face_color=POSITIVE, size=min(max(3.0, min(geometry.label_shape[-2:]) / 40), 16.0), **kw,
    )  # fmt: skip
    points.feature_defaults = {"positive": True}
    points.mode = "add"
    viewer.layers.selection.active = points
    return points, boxes, preview, labels


def positive_flags(points) -> np.ndarray:
    """The positive / negative flag of every point (positive where no feature is set)."""
    feats = getattr(points, "features", None)
    if feats is None or "positive" not in feats:
        return np.ones(len(points.data), bool)
    return np.asarray(feats["positive"].fillna(True), bool)


def colour_points(points, positive_mode: bool) -> None:
    """Colour points by their flag and set the colour of the next one."""
    flags = positive_flags(points)
    if len(flags):
        points.face_color = [POSITIVE if f else NEGATIVE for f in flags]
    points.current_face_color = POSITIVE if positive_mode else NEGATIVE


def _on_slice(coords: np.ndarray, index) -> np.ndarray:
    k = len(index)
    if k == 0:
        return np.ones(len(coords), bool)
    return np.all(np.round(coords[:, :k]) == np.asarray(index), axis=1)


def slice_prompts(points, boxes, index):
    """Prompts placed on slice ``index``: points (row, col), flags, rectangles (4, 2)."""
    pts = np.zeros((0, 2)), np.zeros(0, bool)
    if points is not None and len(points.data):
        data = np.asarray(points.data)
        keep = _on_slice(data, index)
        pts = data[keep][:, -2:], positive_flags(points)[keep]
    rects = []
    if boxes is not None:
        for verts, kind in zip(boxes.data, boxes.shape_type, strict=False):
            verts = np.asarray(verts)
            if kind == "rectangle" and _on_slice(verts, index).all():
                rects.append(verts[:, -2:])
    return pts[0], pts[1], rects


def remove_slice_prompts(points, boxes, index) -> None:
    """Delete the prompts placed on slice ``index``."""
    if points is not None and len(points.data):
        on = np.flatnonzero(_on_slice(np.asarray(points.data), index))
        if len(on):
            points.selected_data = set(int(i) for i in on)
            points.remove_selected()
    if boxes is not None and len(boxes.data):
        on = [i for i, v in enumerate(boxes.data) if _on_slice(np.asarray(v), index).all()]
        if on:
            boxes.selected_data = set(on)
            boxes.remove_selected()


def write_objects(labels, index, masks, ids, overwrite: bool, clear_id: int | None = None):
    """Write 2-D ``masks`` of slice ``index`` into a Labels layer in one undoable step.

    See :func:`napari_sam._napari.annotator.write_objects`; returns the pixels written.
    """
    from .annotator import write_objects as write

    return write(labels.data, index, masks, ids, overwrite, clear_id, labels.data_setitem)


def show_window(preview, image, geometry, index, plane, window) -> None:
    """Show ``plane`` (covering ``window`` of slice ``index``) in a windowed preview layer.

    The layer's data is the window only, on slice ``index``, placed by its ``translate``.
    """
    scale, translate = spatial_transform(image, geometry)
    n = len(geometry.label_shape)
    if window is None:
        preview.data = np.zeros((1,) * n, np.int32)
        return
    offset = np.array([*index, window[0], window[2]], float)
    data = plane.reshape((1,) * (n - 2) + plane.shape)
    place = tuple(np.asarray(translate) + offset * np.asarray(scale))
    if preview.data.shape == data.shape:  # the same size: cheaper than a new array
        preview.data[...] = data
        if not np.allclose(preview.translate, place):
            preview.translate = place
        preview.refresh()
        return
    preview.data = data
    preview.translate = place


def tile_overlay(viewer, image, geometry, factor: int):
    """The ready-tiles overlay of ``image`` (an Image layer, 1 on ready tiles), added if
    needed; one pixel holds ``factor`` x ``factor`` image pixels."""
    name = f"{PREFIX}tiles ready ({image.name})"
    if name in viewer.layers:
        return viewer.layers[name]
    scale, translate = spatial_transform(image, geometry)
    h, w = geometry.label_shape[-2:]
    shape = (*geometry.label_shape[:-2], -(-h // factor), -(-w // factor))
    scale = np.asarray(scale, float)
    scale[-2:] *= factor
    translate = np.asarray(translate, float)
    translate[-2:] += (factor - 1) / 2 * np.asarray(spatial_transform(image, geometry)[0][-2:])
    return viewer.add_image(
        np.zeros(shape, np.uint8), name=name, scale=tuple(scale), translate=tuple(translate),
        colormap="green", opacity=0.25, blending="additive", contrast_limits=(0, 1),
    )  # fmt: skip


def show_tiles(overlay, tiling, index, states) -> None:
    """Paint ``states`` ``{tile: ready}`` of slice ``index`` into the ready-tiles overlay."""
    from ._tiles import overlay_factor, paint_tiles

    plane = overlay.data[tuple(index)]  # a view of the layer's data
    paint_tiles(plane, tiling, overlay_factor(tiling.image_shape), states)
    overlay.refresh()
