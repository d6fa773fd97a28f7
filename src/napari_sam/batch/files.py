"""Which files a run reads and writes: inputs of a folder or glob, and the names of their
label images, stores and prompt files (one stem each, never two inputs to one output)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from .checks import check_writable, os_reason
from .errors import InputError

__all__ = [
    "LABEL_SUFFIX",
    "find_inputs",
    "input_stem",
    "label_name",
    "plan_outputs",
    "prompt_file_for",
    "same_file",
    "store_for",
    "temporary_store",
]


_SUFFIXES = (".tif", ".tiff", ".npy")


_MULTI_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr")


LABEL_SUFFIX = "_labels.tif"


def input_stem(path: Path) -> str:
    """The name of an input without its file type: ``cell.1.tif`` -> ``cell.1``,
    ``plate.ome.tif`` -> ``plate``, ``stack.zarr`` -> ``stack``.

    Every per-input name (label image, embedding store, prompt file) is built from it.
    """
    name = path.name
    for suffix in _MULTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name


def label_name(path: Path) -> str:
    """The label image written for an input in a folder run: ``<stem>_labels.tif``."""
    return input_stem(path) + LABEL_SUFFIX


def find_inputs(text: str) -> tuple[list[Path], bool]:
    """Input files and whether there are several (folder or glob)."""
    from ..stacks.view import is_zarr_directory

    path = Path(text)
    if any(c in text for c in "*?[") and not path.exists():
        found = sorted(Path(p) for p in glob.glob(text))
        if not found:
            raise InputError("INPUT", f"no file matches {text!r}")
        return found, True
    if not path.exists():
        raise InputError("INPUT", f"{text!r} does not exist")
    if path.is_dir() and not is_zarr_directory(path):
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not found:
            raise InputError("INPUT", f"folder {text!r} has no .tif, .tiff or .npy file")
        return found, True
    return [path], False


def same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def plan_outputs(inputs: list[Path], many: bool, out) -> tuple[list[Path], list[Path]]:
    """(inputs, label images to write), checked: outputs never collide or replace an input.

    ``out`` is a folder when there are several inputs, when it is one, or when its text ends
    with a path separator (``labels/``). In a folder run, inputs that are the label images of
    other inputs (a run whose output folder is its input folder, run again) are outputs, not
    inputs: they are left out.
    """
    folder = str(out).endswith(("/", os.sep))
    out = Path(out)
    if many or folder or out.is_dir():
        if out.exists() and not out.is_dir():
            raise InputError(
                "--out", f"cannot create folder {str(out)!r} (a file of that name exists)"
            )
        check_writable(out, "--out")
        from ..io.labels import is_label_output

        targets = {p: out / label_name(p) for p in inputs}
        made = {t.resolve(): p for p, t in targets.items()}
        for p in inputs:
            if p.resolve() in made and not is_label_output(p):
                raise InputError(
                    "--out", f"the label image of input {made[p.resolve()].name!r} would "
                    f"replace input {p.name!r}; give another --out folder"
                )  # fmt: skip
        inputs = [p for p in inputs if p.resolve() not in made]  # our outputs of a past run
        if not inputs:
            raise InputError("INPUT", "every input is a label image written by napari-sam")
        seen: dict[Path, Path] = {}
        for p in inputs:
            key = Path(str(targets[p].resolve()).casefold())
            if key in seen:
                raise InputError(
                    "--out", f"inputs {seen[key].name!r} and {p.name!r} would both be written "
                    f"to {targets[p].name!r}; rename one or run them into separate folders"
                )  # fmt: skip
            seen[key] = p
        outputs = [targets[p] for p in inputs]
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(
                "--out", f"cannot create folder {str(out)!r} ({os_reason(err)})"
            ) from None
    else:
        if same_file(out, inputs[0]):
            raise InputError("--out", f"{str(out)!r} is the input; give the labels another name")
        if not out.parent.is_dir():
            raise InputError(
                "--out", f"cannot write to {str(out.parent)!r} (no such folder)"
            )  # fmt: skip
        check_writable(out.parent, "--out")
        outputs = [out]
    return inputs, outputs


def store_for(settings, inp: Path, many: bool):
    if settings.store is None:
        return None
    store = Path(settings.store)
    return store / f"{input_stem(inp)}.emb.zarr" if many else store


def prompt_file_for(settings, inp: Path, many: bool) -> Path:
    prompts = Path(settings.prompts)
    if not many:
        return prompts
    stem = input_stem(inp)
    for suffix in (".csv", ".json"):
        if (prompts / f"{stem}{suffix}").is_file():
            return prompts / f"{stem}{suffix}"
    raise InputError("--prompts", f"no {stem}.csv or {stem}.json in folder {str(prompts)!r}")


def temporary_store(out) -> Path:
    """The temporary tile store beside the output ``out`` when no ``--store`` is given: a
    hidden name no store of the user's has, so removing it never touches the user's work."""
    out = Path(out)
    return out.with_name(f".{out.name}.napari-sam-tiles.zarr")
