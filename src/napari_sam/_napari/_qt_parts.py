"""Small Qt parts of the widget: layer combo boxes, key bindings, the prompts' status line,
the tooltips that follow the model."""

from __future__ import annotations

import numpy as np
from napari.utils.key_bindings import coerce_keybinding
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QWidget

from ._jobs import model_diameter, model_outline_of

__all__ = ["KeyBindings", "LayerBox", "channels_first", "model_tips", "pair", "prompt_status",
           "row"]  # fmt: skip


def row(widgets) -> QHBoxLayout:
    """The ``widgets`` side by side."""
    line = QHBoxLayout()
    for w in widgets:
        line.addWidget(w)
    return line


def pair(a, b) -> QWidget:
    """A widget holding ``a`` and ``b`` side by side, without margins."""
    w = QWidget()
    line = row((a, b))
    line.setContentsMargins(0, 0, 0, 0)
    w.setLayout(line)
    return w


class LayerBox(QComboBox):
    """A combo box of the viewer's layers of one type.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose layers are listed.
    kind : type
        The layer class listed.
    exclude : tuple of str
        Layer names left out.
    optional : bool
        The first entry is empty (no layer), and is the choice until the user makes one: an
        existing layer is never picked by default (the output labels: never the sample's
        ground truth, or any layer the user did not choose).
    """

    def __init__(self, viewer, kind, exclude=(), optional: bool = False):
        super().__init__()
        self.viewer, self.kind, self.exclude, self.optional = viewer, kind, exclude, optional

    def refresh(self):
        """List the viewer's layers again, keeping the choice if it is still there."""
        current = self.currentText()
        names = [ly.name for ly in self.viewer.layers if isinstance(ly, self.kind)]
        names = [n for n in names if n not in self.exclude]
        self.blockSignals(True)
        self.clear()
        self.addItems([""] * self.optional + names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)

    def layer(self):
        """The chosen layer, or None."""
        name = self.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None


def prompt_status(objects) -> str:
    """The status line for the prompts of a slice: several positive clicks in one object
    are one object (SAM's rule), said with the way to count objects instead."""
    clicks = max((int(np.sum(o.labels)) for o in objects if o.box is None and o.labels is not None),
                 default=0)  # fmt: skip
    if clicks > 1:
        return (f"Segment Anything: {clicks} positive clicks describe ONE object (SAM's rule); "
                "commit each object (Shift-C) or tick 'one click = one object'")
    return f"Segment Anything: {len(objects)} object(s) prompted; Shift-C commits"


def channels_first(image) -> bool:
    """Guess whether the first axis of an image layer holds channels.

    Yes if its axis label says so (``c``, ``ch``, ``channel``); otherwise for a 4-D or
    larger, non-RGB image whose first axis has at most 4 entries.
    """
    if image.rgb:
        return False
    labels = [str(a).lower() for a in getattr(image, "axis_labels", ())]
    if labels and labels[0] in ("c", "ch", "channel", "channels"):
        return True
    if any(a in ("c", "ch", "channel", "channels") for a in labels):
        return False  # labelled, and not first: the user must transpose
    return image.ndim >= 4 and image.data.shape[0] <= 4


class KeyBindings:
    """Key bindings a widget adds to the viewer and to layers, undone by :meth:`unbind`.

    Each binding overwrites the owner's current one for that key; :meth:`unbind` puts the
    previous binding back (or removes the key) wherever the widget's binding is still there.
    """

    def __init__(self):
        self._bound = []  # (owner, key binding, func, previous func or None)

    def bind(self, owner, key: str, func) -> None:
        """Bind ``key`` of ``owner`` (a viewer or layer) to ``func``, once per owner and key."""
        kb = coerce_keybinding(key)
        if any(o is owner and k == kb for o, k, _, _ in self._bound):
            return
        previous = owner.bind_key(kb, func, overwrite=True)
        self._bound.append((owner, kb, func, previous))

    def bound(self) -> list:
        """``(owner, key binding)`` of every binding made."""
        return [(o, k) for o, k, _, _ in self._bound]

    def unbind(self, *_) -> None:
        """Remove the bindings (restoring the previous ones); safe to call more than once."""
        bound, self._bound = self._bound, []
        for owner, kb, func, previous in reversed(bound):
            try:
                if owner.keymap.get(kb) is func:
                    owner.bind_key(kb, previous, overwrite=True)
            except RuntimeError:  # a layer whose Qt side is gone
                continue


def model_tips(name: str) -> dict:
    """The controls that follow registered model ``name``: ``{control: (enabled, tooltip)}``
    for ``"sam_masks"`` (a model that draws outlines of its own) and ``"diameter"`` (one that
    records a preferred object size)."""
    drawn, size = bool(name) and model_outline_of(name), model_diameter(name) if name else None
    sam_masks = (
        f"{name}'s masks are redrawn at each object's half maximum, a box's cut to the box and "
        "a click's confined by its instance decoder (docs/tiny-model.md). On: SAM's masks as "
        "the model decodes them (napari-sam segment --sam-masks)" if drawn
        else f"{name} draws SAM's masks as decoded"
    )  # fmt: skip
    diameter = (
        f"Typical object diameter in image pixels: slices are tiled so that objects reach the "
        f"model at {size:g} px, the size it works best at; masks come back at full resolution. "
        f"'native' (0): no rescaling. Until you set it, the widget sets it for each new image "
        f"whose objects look far from {size:g} px" if size is not None
        else f"{name} records no preferred object size: it sees images at native resolution"
    )  # fmt: skip
    return {"sam_masks": (drawn, sam_masks), "diameter": (size is not None, diameter)}
