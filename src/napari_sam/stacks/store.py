"""Cache of SAM image embeddings per slice: in memory (LRU, byte budget), optionally on disk.

On-disk layout (``path``)::

    zarr.json            zarr v3 array (n_slices, H'', W'', D) float32, one uncompressed chunk
                         per slice; attributes["napari_sam"] = store metadata (encoder signature,
                         channel and normalisation signatures, package version, shapes)
    c/<i>/0/0/0          chunk of slice i
    records/<i>.json     completion record of slice i: store key, content hash of the slice,
                         CRC32 of the chunk's bytes

A slice is valid only if its record exists, names this store's key and the slice's current
content hash, and the chunk read back matches the CRC32. The record is written (temp file +
``os.replace``) only after the chunk, and removed before a chunk is rewritten, so a process
killed at any moment leaves either a valid slice or one that is recomputed. One writer at a time.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .._atomic import remove_stale_temps, write_atomic
from .channels import ChannelSpec
from .normalize import FittedNormalization, Normalization
from .progress import PrecomputeResult, TqdmProgress
from .store_layout import (
    StoreMismatchError,
    check_store_path,
    discard_store,
    package_version,
    slice_hash,
)

__all__ = [
    "MEMORY_BUDGET",
    "EmbeddingStore",
    "PrecomputeResult",
    "StoreMismatchError",
    "TqdmProgress",
    "check_store_path",
    "package_version",
    "slice_hash",
]

FORMAT = 1
#: Bytes of embeddings kept in memory by default (the store's, every predictor's, the widget's).
MEMORY_BUDGET = 1 << 30
_ARRAY = {"dtype": "float32", "fill_value": 0.0, "compressors": None, "zarr_format": 3}
_LABELS = {
    "format": "store format",
    "package_version": "napari-sam version",
    "encoder": "encoder signature",
    "channels": "channel spec",
    "normalization": "normalisation",
    "embedding_shape": "embedding shape",
    "n_slices": "number of slices",
    "tiling": "tiling",
}


def _write_record(path: Path, record: dict) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(record).encode()))


class EmbeddingStore:
    """Per-slice image embeddings: memory (LRU within a byte budget) -> disk -> compute.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory of the on-disk store (created if missing). ``None``: memory only.
    memory_budget : int
        Bytes of embeddings kept in memory; least recently used slices are evicted.
    overwrite : bool
        If the store at ``path`` was made with other settings, discard it and start fresh
        instead of raising :class:`StoreMismatchError`. A matching store is always reused.
    """

    def __init__(self, path=None, memory_budget: int = MEMORY_BUDGET, overwrite: bool = False):
        self.path = None if path is None else Path(path)
        self.memory_budget = int(memory_budget)
        self.overwrite = overwrite
        self._mem: OrderedDict[int, tuple[str, np.ndarray]] = OrderedDict()
        self._records: dict[int, dict] = {}
        self._lock = threading.RLock()
        self._array = None
        self.key = self.metadata = self.view = self.encoder = None
        self.damaged = 0  # stored embeddings found damaged (and computed again)

    @classmethod
    def open(cls, view, encoder, channels=None, normalization=None, path=None, **kwargs):
        """Create a store and :meth:`bind` it; ``kwargs`` go to the constructor."""
        return cls(path, **kwargs).bind(view, encoder, channels, normalization)

    @property
    def memory_bytes(self) -> int:
        """Bytes of embeddings held in memory."""
        return sum(e.nbytes for _, e in self._mem.values())

    def bind(self, view, encoder, channels=None, normalization=None) -> EmbeddingStore:
        """Attach a stack, an encoder and settings; open or create the on-disk store.

        Parameters
        ----------
        view : StackView
            The stack whose slices are embedded.
        encoder : SliceEncoder
            Has ``signature``, ``embedding_shape`` and ``encode((B, H, W, C)) -> (B, ...)``.
        channels : ChannelSpec, optional
            Default :meth:`ChannelSpec.default_for` the number of channels.
        normalization : Normalization or FittedNormalization, optional
            Fitted on ``view`` if not fitted yet. Default ``Normalization()``.

        Raises
        ------
        StoreMismatchError
            If the store at ``path`` differs in any ingredient and ``overwrite`` is False.
        """
        channels = channels or ChannelSpec.default_for(view.n_channels)
        channels = channels.resolve(view.n_channels)
        normalization = normalization or Normalization()
        if isinstance(normalization, Normalization):
            normalization = normalization.fit(view)
        if not isinstance(normalization, FittedNormalization) or len(normalization.lo) != (
            view.n_channels
        ):
            raise ValueError(
                f"normalization: expected a Normalization or one fitted on {view.n_channels} "
                f"channel(s), got {normalization!r}"
            )
        meta = {
            "format": FORMAT,
            "package_version": package_version(),
            "encoder": str(encoder.signature),
            "channels": channels.signature(),
            "normalization": normalization.signature(),
            "embedding_shape": [int(s) for s in encoder.embedding_shape],
            "n_slices": len(view),
        }
        tiling = getattr(view, "tiling_signature", None)
        if tiling is not None:  # a TileView: a record per tile per slice, keyed by the tiling
            meta["tiling"] = tiling()
        key = hashlib.blake2b(json.dumps(meta, sort_keys=True).encode(), digest_size=16)
        with self._lock:
            if key.hexdigest() != self.key:
                if self.path is not None:
                    self._open_disk(meta, key.hexdigest())
                self._mem.clear()
                self.key, self.metadata = key.hexdigest(), meta
            self.view, self.encoder = view, encoder
            self.channels, self.normalization = channels, normalization
        return self

    def _open_disk(self, meta: dict, key: str) -> None:
        import zarr

        path, stored = self.path, None
        check_store_path(path)
        if (path / "zarr.json").exists():
            try:
                self._array = zarr.open_array(str(path), mode="r+")
                stored = dict(self._array.attrs).get("napari_sam")
            except Exception as err:  # unreadable metadata
                stored = {"format": f"unreadable ({err})"}
            if stored is None:
                raise StoreMismatchError(f"path: {path} holds a zarr array that is no store")
        diff = [k for k in _LABELS if stored is not None and stored.get(k) != meta.get(k)]
        if diff and not self.overwrite:
            lines = "; ".join(
                f"{_LABELS[k]}: stored {stored.get(k)!r}, now {meta.get(k)!r}" for k in diff
            )
            raise StoreMismatchError(
                f"embedding store {path} was made with other settings ({lines}); "
                f"pass overwrite=True to discard it, or use another path"
            )
        if stored is None or diff:
            discard_store(path)
            shape = (meta["n_slices"], *meta["embedding_shape"])
            attrs = {"napari_sam": meta}
            self._array = zarr.create_array(
                str(path), shape=shape, chunks=(1, *shape[1:]), attributes=attrs, **_ARRAY
            )
        (path / "records").mkdir(exist_ok=True)
        remove_stale_temps(path / "records")  # left by a killed writer (not a live one's)
        self._records = {}
        for f in (path / "records").iterdir():
            if f.name.startswith("."):
                continue  # a live writer's temp file
            try:
                rec = json.loads(f.read_text())
                if rec["key"] == key and f.name == f"{rec['index']}.json":
                    self._records[int(rec["index"])] = rec
            except (ValueError, KeyError, TypeError):
                pass  # torn or foreign record: the slice is recomputed

    def _mem_put(self, i: int, content: str, emb: np.ndarray) -> None:
        self._mem.pop(i, None)
        if emb.nbytes > self.memory_budget:
            return
        self._mem[i] = (content, emb)
        while self.memory_bytes > self.memory_budget:
            self._mem.popitem(last=False)

    def _read_disk(self, i: int, content: str) -> np.ndarray | None:
        """The slice's embedding from disk if its record and checksum are valid, else None."""
        rec = self._records.get(i)
        if self._array is None or rec is None or rec["content"] != content:
            return None
        try:
            emb = np.ascontiguousarray(self._array[i], dtype="<f4")
        except Exception as err:  # truncated / undecodable chunk
            return self._damaged(i, f"unreadable chunk: {type(err).__name__}")
        if zlib.crc32(emb) != rec["crc32"]:
            return self._damaged(i, "checksum mismatch")
        emb.flags.writeable = False
        self._mem_put(i, content, emb)
        return emb

    def _damaged(self, i: int, why: str) -> None:
        self.damaged += 1
        warnings.warn(
            f"embedding store {self.path}: the stored embedding of slice {i} is damaged "
            f"({why}); it is computed again",
            stacklevel=3,
        )

    def _lookup(self, i: int, content: str) -> np.ndarray | None:
        with self._lock:
            hit = self._mem.get(i)
            if hit is not None and hit[0] == content:
                self._mem.move_to_end(i)
                return hit[1]
            return self._read_disk(i, content)

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Normalise and map the channels of a raw ``(Y, X, C)`` slice for the encoder."""
        return self.channels.apply(self.normalization.apply(image))

    def _compute(self, items: list[tuple[int, np.ndarray, str]]) -> list[np.ndarray]:
        batch = np.stack([self.prepare(img) for _, img, _ in items])
        out = np.asarray(self.encoder.encode(batch))
        want = (len(items), *self.metadata["embedding_shape"])
        if out.shape != want:
            raise ValueError(f"encoder: returned shape {out.shape}, expected {want}")
        if not np.isfinite(out).all():  # never store NaN / Inf as a valid embedding
            finite = np.isfinite(out).reshape(len(items), -1).all(axis=1)
            bad = [i for (i, _, _), ok in zip(items, finite, strict=True) if not ok]
            raise ValueError(
                f"encoder: the embeddings of slice {bad[0]} are not finite (NaN or infinite "
                f"values; slices {bad}); nothing was stored. Check the image and the weights."
            )
        embs = []
        for (i, _, content), emb in zip(items, out, strict=True):
            emb = np.ascontiguousarray(emb, dtype="<f4")
            emb.flags.writeable = False
            with self._lock:
                if self._array is not None:
                    rec_path = self.path / "records" / f"{i}.json"
                    self._records.pop(i, None)
                    rec_path.unlink(missing_ok=True)  # invalid while the chunk is rewritten
                    self._array[i] = emb
                    rec = {"index": i, "key": self.key, "content": content}
                    rec["crc32"] = zlib.crc32(emb)
                    _write_record(rec_path, rec)
                    self._records[i] = rec
                self._mem_put(i, content, emb)
            embs.append(emb)
        return embs

    def get(self, index) -> np.ndarray:
        """Embedding of one slice (read-only float32): memory, else disk, else computed.

        Memory hits are trusted for the session (call :meth:`invalidate` after editing the
        data in place); disk hits are checked against the slice's content hash and checksum.
        """
        if self.view is None:
            raise RuntimeError("EmbeddingStore: call bind(view, encoder, ...) first")
        i = self.view.flat_index(index)
        with self._lock:
            hit = self._mem.get(i)
            if hit is not None:
                self._mem.move_to_end(i)
                return hit[1]
        image = self.view.get_slice(i)
        content = slice_hash(image)
        emb = self._lookup(i, content)
        return emb if emb is not None else self._compute([(i, image, content)])[0]

    def in_memory(self, index) -> bool:
        """Whether slice ``index`` has an embedding in memory (:meth:`get` is then instant)."""
        if self.view is None:
            raise RuntimeError("EmbeddingStore: call bind(view, encoder, ...) first")
        i = self.view.flat_index(index)
        with self._lock:
            return i in self._mem

    def available(self) -> set[int]:
        """Flat numbers of the slices held in memory or recorded on disk (a recorded slice is
        still checked against its content when read)."""
        with self._lock:
            return set(self._mem) | set(self._records)

    def invalidate(self, index=None) -> None:
        """Forget in-memory embeddings (all, or one slice) so they are checked again."""
        with self._lock:
            if index is None:
                self._mem.clear()
            else:
                self._mem.pop(self.view.flat_index(index), None)

    def precompute(
        self,
        view=None,
        encoder=None,
        channels=None,
        normalization=None,
        batch_size: int = 1,
        progress=None,
        cancel=None,
    ) -> PrecomputeResult:
        """Embed every slice not yet validly stored, writing each as soon as it is done.

        Parameters
        ----------
        view, encoder, channels, normalization
            As for :meth:`bind`; omitted: use the bound ones.
        batch_size : int
            Slices per ``encoder.encode`` call.
        progress : callable, optional
            Called as ``progress(done, total)``; see :class:`TqdmProgress`.
        cancel : threading.Event or callable, optional
            Checked between batches; when set / true, stop and return (``cancelled=True``).
        """
        if self.view is not None:  # keep what is bound unless told otherwise
            same = view is None or view is self.view
            view = self.view if view is None else view
            encoder, channels = encoder or self.encoder, channels or self.channels
            normalization = normalization or (
                self.normalization if same else self.normalization.settings
            )
        if view is None or encoder is None:
            raise ValueError("view, encoder: needed when the store is not bound yet")
        self.bind(view, encoder, channels, normalization)
        return self.precompute_indices(range(len(self.view)), batch_size, progress, cancel)

    def precompute_indices(self, indices, batch_size=1, progress=None, cancel=None):
        """Embed the slices ``indices`` (of the bound view) not yet validly stored.

        As :meth:`precompute`, for some slices only (``progress`` counts them). Processes that
        bind one on-disk store with the same settings may each precompute other slices (each
        is its own chunk and record): e.g. the tiles of one image on a dask cluster, once the
        store exists (see :mod:`napari_sam.batch.cluster`).

        Parameters
        ----------
        indices : iterable of int or tuple of int
            The slices (flat numbers or index tuples of the bound view); repeats are dropped.
        batch_size, progress, cancel
            As for :meth:`precompute`.

        Returns
        -------
        PrecomputeResult
            Of ``indices``: computed, reused (validly stored) and repaired.
        """
        if self.view is None:
            raise RuntimeError("EmbeddingStore: call bind(view, encoder, ...) first")
        indices = list(dict.fromkeys(self.view.flat_index(i) for i in indices))
        is_cancelled = getattr(cancel, "is_set", cancel) or (lambda: False)
        total, pending, damaged = len(indices), [], self.damaged
        res = PrecomputeResult(0, 0, total)
        for k, i in enumerate(indices):
            if is_cancelled():
                res.cancelled = True
                break
            image = self.view.get_slice(i)
            content = slice_hash(image)
            if self._lookup(i, content) is not None:
                res.reused += 1
            else:
                pending.append((i, image, content))
            if pending and (len(pending) >= batch_size or k == total - 1):
                self._compute(pending)
                res.computed += len(pending)
                pending.clear()
            elif pending:
                continue  # nothing new is done yet
            if progress:
                progress(res.computed + res.reused, total)
        res.repaired = self.damaged - damaged
        return res
