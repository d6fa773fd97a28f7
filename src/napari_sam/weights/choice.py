"""Which model the apps start with: the best one the user already has.

A micro-sam light-microscopy model (``vit_b_lm``, then ``vit_l_lm``) when both its files are on
this machine (the project's cache, or micro-sam's own), else the shipped ``sam_tiny_nuclei``,
which works offline. Nothing is downloaded or hashed here: the files are checked by name (and
size where it is known); loading verifies them as always. Importable without TensorFlow.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from .defaults import OFFLINE_MODEL
from .download import WeightFile, cache_dir, micro_sam_cache
from .micro_sam import MICRO_SAM_MODELS
from .registry import model_entry

__all__ = ["PREFERRED_MODELS", "ModelChoice", "default_model", "download_needed", "is_on_disk"]

# the microscopy models worth starting with, best first (generalists for light microscopy)
PREFERRED_MODELS = ("vit_b_lm", "vit_l_lm")
# about, encoder and decoder together (micro-sam's registry records no sizes)
_SIZES_MB = {"vit_b_lm": 375, "vit_l_lm": 1250, "vit_b_em_organelles": 375,
             "vit_l_em_organelles": 1250}  # fmt: skip


@dataclass(frozen=True)
class ModelChoice:
    """A model the app starts with, and the one line that says why."""

    name: str
    reason: str


def _local(weight: WeightFile) -> pathlib.Path | None:
    places = [cache_dir() / weight.filename]
    if weight.micro_sam_key is not None:
        places.append(micro_sam_cache() / weight.micro_sam_key)
    for path in places:
        try:
            if path.is_file() and (
                weight.size is None or path.stat().st_size == weight.size
            ):
                return path
        except OSError:
            continue
    return None


def is_on_disk(name: str) -> bool:
    """Whether every file of micro-sam model ``name`` is on this machine (not verified)."""
    m = MICRO_SAM_MODELS[name]
    return _local(m.encoder) is not None and _local(m.decoder) is not None


def default_model() -> ModelChoice:
    """The model to start with when the user names none (see the module's text)."""
    for name in PREFERRED_MODELS:
        if is_on_disk(name):
            return ModelChoice(name, f"{name}: micro-sam's light-microscopy model, found on "
                                     "this machine")  # fmt: skip
    best = PREFERRED_MODELS[0]
    return ModelChoice(
        OFFLINE_MODEL,
        f"{OFFLINE_MODEL}: the shipped model (works offline); no micro-sam model is on this "
        f"machine: --model {best} downloads its light-microscopy model once "
        f"(about {_SIZES_MB[best]} MB)",
    )


def download_needed(name: str) -> str | None:
    """What using model ``name`` would download, as a question for the user; None when its
    files are on this machine (or ship with the package, or it has none)."""
    entry = model_entry(name)
    files = [f for f in (entry.weights, entry.decoder) if isinstance(f, WeightFile)]
    missing = [f for f in files if _local(f) is None]
    if not missing:
        return None
    if all(f.size is not None for f in missing):
        size = f"{sum(f.size for f in missing) / 1e6:,.0f} MB"
    else:
        size = f"about {_SIZES_MB[name]:,} MB" if name in _SIZES_MB else "size unknown"
    host = missing[0].url.split("/")[2]
    return (f"{name} needs {len(missing)} file(s) downloaded once ({size}, from {host}) into "
            f"{cache_dir()}. Download now?")
