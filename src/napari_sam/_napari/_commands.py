"""Manifest commands acting on the most recently opened Segment Anything widget."""

from __future__ import annotations

import weakref

_WIDGETS: list[weakref.ref] = []


def register(widget) -> None:
    """Remember ``widget`` as the target of the commands."""
    _WIDGETS.append(weakref.ref(widget))


def unregister(widget) -> None:
    """Forget ``widget`` (it was closed)."""
    _WIDGETS[:] = [r for r in _WIDGETS if r() is not None and r() is not widget]


def active_widget():
    """The most recently opened widget still alive, or None."""
    while _WIDGETS:
        widget = _WIDGETS[-1]()
        if widget is not None:
            return widget
        _WIDGETS.pop()
    return None


def _call(name: str) -> None:
    widget = active_widget()
    if widget is None:
        from napari.utils.notifications import show_warning

        show_warning("Segment Anything: open the widget first (Plugins menu)")
        return
    getattr(widget, name)()


def commit() -> None:
    """Commit the preview into the output Labels layer."""
    _call("commit")


def propagate() -> None:
    """Propagate the current object through the stack."""
    _call("propagate")


def embed_stack() -> None:
    """Embed every slice of the image layer in the background."""
    _call("embed_stack")


def cycle_mask() -> None:
    """Show the next of the candidate masks."""
    _call("cycle_mask")


def clear_prompts() -> None:
    """Remove all prompts."""
    _call("clear_prompts")
