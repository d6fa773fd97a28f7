"""How labels were made, kept beside them: a JSON sidecar in the prompt-file format.

``napari-sam segment`` and ``auto`` write ``<labels>.prompts.json`` next to each label image
(:func:`sidecar_path`): ``{"made_by": {...}, "objects": [...]}``. ``made_by`` records the
command, the package version, the model's name and the hash of its weights, the channels,
the normalisation and the tiling (``auto``: the method and its settings); ``objects`` are the
prompts of each object in the JSON form :func:`napari_sam.io.prompt_files.read_prompts`
reads, each with the ``id`` it has in the labels. ``napari-sam segment IMAGE --prompts
<labels>.prompts.json`` replays them; a sidecar made with other weights is refused unless
``--allow-other-model`` (then a warning names both hashes).
"""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import write_atomic

__all__ = ["FORMAT", "ProvenanceError", "is_sidecar", "read_made_by", "sidecar_path",
           "write_sidecar"]

FORMAT = "napari-sam-tf provenance 1"


class ProvenanceError(ValueError):
    """A sidecar cannot be read as one (the message names the file)."""


def sidecar_path(labels) -> Path:
    """``cells_labels.tif`` -> ``cells_labels.prompts.json`` (beside the labels)."""
    return Path(labels).with_suffix(".prompts.json")


def write_sidecar(path, made_by: dict, objects: list[dict]) -> Path:
    """Write the sidecar ``path`` atomically (``made_by`` and the objects' prompts)."""
    record = {"format": FORMAT, "made_by": made_by, "objects": objects}
    text = json.dumps(record, indent=1, default=_plain)
    return write_atomic(Path(path), lambda f: f.write(text.encode()))


def is_sidecar(path) -> bool:
    """Whether ``path`` is a sidecar written here (JSON declaring :data:`FORMAT`)."""
    data = _load(Path(path))
    return isinstance(data, dict) and data.get("format") == FORMAT


def _load(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def read_made_by(path) -> dict | None:
    """The ``made_by`` record of a prompts file, or None when it has none (a plain prompt
    file, or a CSV).

    Raises
    ------
    ProvenanceError
        A JSON file that declares the sidecar format but has no readable ``made_by``.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        return None
    data = _load(path)  # None when unreadable: the prompt reader says what is wrong with it
    if not isinstance(data, dict) or "made_by" not in data:
        return None
    made_by = data["made_by"]
    if not isinstance(made_by, dict) or not isinstance(made_by.get("weights_hash", ""), str):
        raise ProvenanceError(f"{path.name}: 'made_by' must be an object with the model's "
                              "'weights_hash'")  # fmt: skip
    return made_by


def _plain(value):
    """numpy numbers and arrays, tuples and paths as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
