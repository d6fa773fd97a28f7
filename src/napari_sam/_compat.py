"""The module paths of napari-sam 0.1 (flat modules), kept working for one release.

``import napari_sam.stack_predictor`` gives ``napari_sam.stacks.stack_predictor`` (the same
module object) with a :class:`DeprecationWarning`; nothing is imported until it is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "napari_sam.predictor": "napari_sam.predict.predictor",
    "napari_sam.prompts": "napari_sam.predict.prompts",
    "napari_sam.resizer": "napari_sam.predict.resizer",
    "napari_sam.channels": "napari_sam.stacks.channels",
    "napari_sam.normalize": "napari_sam.stacks.normalize",
    "napari_sam.encoder": "napari_sam.stacks.encoder",
    "napari_sam.embedding_store": "napari_sam.stacks.store",
    "napari_sam.stack_predictor": "napari_sam.stacks.stack_predictor",
    "napari_sam.automatic": "napari_sam.segment.automatic",
    "napari_sam.amg_utils": "napari_sam.segment.amg_utils",
    "napari_sam.linking": "napari_sam.segment.linking",
    "napari_sam.partial": "napari_sam.segment.partial",
    "napari_sam.label_io": "napari_sam.io.labels",
    "napari_sam.prompt_files": "napari_sam.io.prompt_files",
    "napari_sam.training": "napari_sam.train.training",
    "napari_sam.synthetic": "napari_sam.train.synthetic",
    "napari_sam.evaluation": "napari_sam.train.evaluation",
    "napari_sam.cli_batch": "napari_sam.batch.label",
    "napari_sam.cli_train": "napari_sam.batch.train",
    "napari_sam.distributed": "napari_sam.batch.api",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names and hands out the module at the new one."""

    def __init__(self):
        self._specs = {}

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module(new)
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # already executed at its new name; importlib set __spec__ to the alias's: put back
        module.__spec__ = self._specs[module.__name__]


def install() -> None:
    """Make the old module names importable (idempotent)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
