"""The record of how each object of an interactively made label image was obtained.

The napari widget adds an entry per object on every commit: the slice, the clicks and box,
the candidate chosen, whether other labels were overwritten, whether it refined an existing
object, and the commit (``step``) it belongs to. Each entry also keeps digests of the
object's pixels right after the commit (and after later commits that painted over part of
it), which is how the log stays consistent with the
labels when the user undoes or redoes in napari (the log is never told): an object keeps
its latest entry whose digest matches the labels now, and entries after it (undone) are
dropped; an object edited by hand (no entry matches) keeps its entries, marked ``edited``,
and an object no longer in the labels loses them.

The entries are the ``objects`` of a sidecar (:mod:`napari_sam.io.provenance`), in the JSON
prompt-file format ``napari-sam segment`` reads, which replays them commit by commit to the
same labels.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["PromptLog", "object_digest"]

_PRIVATE = ("digests",)  # kept in the log, left out of the sidecar


def object_digest(plane: np.ndarray, label: int) -> str:
    """A digest of the pixels of ``label`` in the 2-D ``plane`` (``""`` when absent)."""
    mask = np.asarray(plane) == label
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(rows):
        return ""
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h = hashlib.blake2b(np.array([y0, y1, x0, x1], np.int64).tobytes(), digest_size=12)
    h.update(np.packbits(mask[y0:y1, x0:x1]).tobytes())
    return h.hexdigest()


class PromptLog:
    """The entries of a label image's objects, in the order they were committed.

    Parameters
    ----------
    entries : list of dict, optional
        Entries of an earlier log (e.g. a Labels layer's metadata).
    """

    def __init__(self, entries=None):
        self.entries: list[dict] = [dict(e) for e in entries or ()]

    @classmethod
    def from_sidecar(cls, objects, labels) -> PromptLog:
        """The log of a sidecar's ``objects`` for ``labels`` as they are now (each object's
        last entry takes the labels' state as its own)."""
        log = cls(o for o in objects if isinstance(o, dict) and "step" in o and "id" in o)
        last = {}
        for e in log.entries:
            e["digests"] = []
            last[(tuple(e["slice"]), int(e["id"]))] = e
        for (index, label), e in last.items():
            if not e.get("edited"):  # edited by hand before it was saved: stays so
                e["digests"] = [object_digest(np.asarray(labels[index]), label)]
        return log

    @property
    def next_step(self) -> int:
        """The step number of the next commit."""
        return 1 + max((int(e.get("step", 0)) for e in self.entries), default=0)

    def add(self, labels, index, entries, step: int | None = None) -> None:
        """Record the objects of one commit on slice ``index``, written into ``labels``
        (call :meth:`prune` on the slice before writing).

        Parameters
        ----------
        labels : array-like
            The labels after the commit.
        index : tuple of int
            The slice.
        entries : list of dict
            One per object: ``id``, ``points``, ``labels``, ``box``, ``multimask``, ``choice``,
            ``overwrite``, ``refine``, ``propagate`` (keys with None values are left out).
        step : int, optional
            The commit's number (default :attr:`next_step`; the slices of one propagation
            share theirs).
        """
        index = tuple(int(i) for i in index)
        plane = np.asarray(labels[index])
        new = {int(e["id"]) for e in entries}
        last = {}  # the other objects of the slice: their state after this commit is also theirs
        for e in self.entries:
            if tuple(e["slice"]) == index and int(e["id"]) not in new:
                last[int(e["id"])] = e
        for label, e in last.items():
            now = object_digest(plane, label)
            if not e.get("edited") and now and now not in e["digests"]:
                e["digests"].append(now)
        step = self.next_step if step is None else int(step)
        for e in entries:
            entry = {"object": str(e["id"]), "slice": list(index), "step": step}
            entry.update({k: v for k, v in e.items() if v is not None})
            entry["digests"] = [object_digest(plane, int(e["id"]))]
            self.entries.append(entry)

    def prune(self, labels, slices=None) -> None:
        """Make the log agree with ``labels`` on ``slices`` (default: every slice logged)."""
        slices = {tuple(e["slice"]) for e in self.entries} if slices is None else set(slices)
        planes = {s: np.asarray(labels[s]) for s in slices}
        groups: dict = {}
        for n, e in enumerate(self.entries):
            if tuple(e["slice"]) in planes:
                groups.setdefault((tuple(e["slice"]), int(e["id"])), []).append(n)
        drop = set()
        for (s, label), members in groups.items():
            now = object_digest(planes[s], label)
            if not now:  # the object is gone (undone, erased)
                drop.update(members)
                continue
            live = [n for n in members if now in self.entries[n]["digests"]]
            if live:  # undone entries after the one the labels show now
                drop.update(n for n in members if n > live[-1])
                for n in members:
                    self.entries[n].pop("edited", None)
            else:  # changed by hand (or painted over): kept, marked
                for n in members:
                    self.entries[n]["edited"] = True
        self.entries = [e for n, e in enumerate(self.entries) if n not in drop]

    def objects(self, labels) -> list[dict]:
        """The entries agreeing with ``labels`` (see :meth:`prune`), as sidecar objects."""
        self.prune(labels)
        return [{k: v for k, v in e.items() if k not in _PRIVATE} for e in self.entries]
