"""``napari-sam embed``: the arguments (the work: :func:`napari_sam.batch.embed.embed`)."""

from __future__ import annotations

import argparse

from .options import add_options

__all__ = ["add_embed_command"]

EPILOG = """\
examples:
  napari-sam embed cells.tif --model sam_vit_b --out cells.emb.zarr
  napari-sam embed movie.npy --axes TCYX --channels rgb:2,0 --model sam_vit_b \\
      --weights sam_vit_b_01ec64.pth --normalization percentile:1,99.5 --out movie.emb.zarr

Run it again with the same settings and only the slices still missing are computed (an
interrupted run resumes). A store made with another model, weights or settings is refused
unless --overwrite is given.
"""


def add_embed_command(sub) -> None:
    """Add the ``embed`` subcommand to the ``napari-sam`` parser."""
    from ..batch.settings import EmbedSettings

    p = sub.add_parser(
        "embed", help="precompute the SAM embeddings of a stack into an on-disk store",
        description="Precompute the SAM image embedding of every slice of a stack into a store\n"
        "directory (zarr), with a progress bar; print how many slices were computed and reused.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_options(
        p, EmbedSettings,
        ["input", "model", "weights", "out", "axes", "channels", "normalization", "batch_size",
         "overwrite", "tile", "halo", "diameter", "no_tile", "dtype", "scheduler", "override"],
        out=("store directory to write", "STORE"),
        overwrite="discard a store at STORE made with another model, weights or settings",
        scheduler="spread the tiles (or slices) over a dask cluster, e.g. tcp://10.0.0.5:8786 "
        "(needs dask[distributed]); the workers write to STORE, which they must reach",
    )  # fmt: skip
    p.set_defaults(run=_run)


def _run(args) -> int:
    from ..batch.embed import embed
    from ..batch.settings import EmbedSettings

    res = embed(EmbedSettings.from_namespace(args))
    unit = res.unit
    repaired = f" ({res.repaired} damaged {unit}(s) recomputed)" if res.repaired else ""
    print(
        f"computed {res.computed} {unit}(s), reused {res.reused} of {res.total}{repaired}; "
        f"store: {args.out}"
    )
    return 0
