"""The defaults the apps share, one constant each (no imports: cheap for any app to read).

- :data:`CLI_MODEL`: the command line's ``--model`` default, Meta's ViT-B: masks as Meta's on
  any image, for real work (downloaded once; offline, the error names :data:`OFFLINE_MODEL`).
- :data:`WIDGET_MODEL`: the napari widget's first choice, the shipped ``sam_tiny_nuclei``: it
  answers at once and offline, on fluorescence nuclei.
- :data:`OFFLINE_MODEL`: the model that needs no download.

The embeddings' memory budget is :data:`napari_sam.stacks.store.MEMORY_BUDGET`.
"""

from __future__ import annotations

__all__ = ["CLI_MODEL", "OFFLINE_MODEL", "WIDGET_MODEL"]

OFFLINE_MODEL = "sam_tiny_nuclei"
WIDGET_MODEL = OFFLINE_MODEL
CLI_MODEL = "sam_vit_b"
