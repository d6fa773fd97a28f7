"""Progress of precomputing a store: the result counts and a tqdm progress callback."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PrecomputeResult", "TqdmProgress"]


@dataclass
class PrecomputeResult:
    """Counts returned by :meth:`EmbeddingStore.precompute`; unpacks as (computed, reused)."""

    computed: int
    reused: int
    total: int
    cancelled: bool = False
    repaired: int = 0  # of ``computed``: slices whose stored embedding was damaged
    unit: str = "slice"  # what is counted: "slice", or "tile" for a tiled stack

    def __iter__(self):
        return iter((self.computed, self.reused))


class TqdmProgress:
    """A ``progress(done, total)`` callback drawing a tqdm bar (for scripts); close it after."""

    def __init__(self, desc: str = "embeddings", **kwargs):
        self._kwargs, self._bar = dict(desc=desc, **kwargs), None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, **self._kwargs)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
