"""The defaults the apps share, one constant each (no imports: cheap for any app to read).

- :data:`CLI_MODEL`: the architecture of a ``--weights`` checkpoint given without ``--model``
  (Meta's ViT-B). Without either, the apps start with
  :func:`napari_sam.weights.choice.default_model` (a micro-sam model on this machine, else
  :data:`OFFLINE_MODEL`).
- :data:`WIDGET_MODEL`: the model of a widget job made without one, the shipped
  ``sam_tiny_nuclei``: it answers at once and offline, on fluorescence nuclei.
- :data:`OFFLINE_MODEL`: the model that needs no download.

The embeddings' memory budget is :data:`napari_sam.stacks.store.MEMORY_BUDGET`.
"""

from __future__ import annotations

__all__ = ["CLI_MODEL", "OFFLINE_MODEL", "WIDGET_MODEL"]

OFFLINE_MODEL = "sam_tiny_nuclei"
WIDGET_MODEL = OFFLINE_MODEL
CLI_MODEL = "sam_vit_b"
