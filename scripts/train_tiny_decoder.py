"""Train the instance decoder of ``sam_tiny_nuclei`` on its frozen encoder, and export it.

The decoder (3 levels, 16 initial features: 8 x the 32 x 32 embedding grid, the model's
256 x 256 input) learns foreground, centre and boundary distances on the same synthetic
images as the model (``scripts/train_tiny.py``'s sampler). Resumable: re-run the same command
and it continues from the latest checkpoint in ``--workdir``; ``--chunk N`` stops after N more
steps (a background job that finishes inside a session). See docs/tiny-model.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import napari_sam  # noqa: F401  (TensorFlow's defaults, set before keras imports it)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from train_tiny import make_sampler, value_range  # noqa: E402

from napari_sam._atomic import write_atomic  # noqa: E402
from napari_sam.model.instance_decoder import DecoderConfig, InstanceDecoder  # noqa: E402
from napari_sam.train.decoder_training import DecoderTrainConfig, DecoderTrainer  # noqa: E402
from napari_sam.train.styles import style_names  # noqa: E402
from napari_sam.weights import create_model  # noqa: E402
from napari_sam.weights.decoder import export_decoder_state  # noqa: E402
from napari_sam.weights.registry import TINY_NUCLEI_DECODER  # noqa: E402

DEFAULT_OUT = TINY_NUCLEI_DECODER


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--chunk", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--pool", type=int, default=1200, help="images embedded once and "
                        "drawn from (0: new images every step)")
    parser.add_argument("--features", type=int, default=16, help="initial features")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--styles", default="default", help="comma-separated styles of "
                        "napari_sam.train.styles, one drawn per image, or 'all'")
    parser.add_argument("--edge-level", type=value_range, default=None, metavar="LOW:HIGH",
                        help="the labels' edge at this fraction of a nucleus's intensity, "
                        "drawn per image (as train_tiny.py's --edge-level)")
    parser.add_argument("--weights", default=None, help="the model whose embeddings the "
                        "decoder reads (default: the shipped weights)")
    parser.add_argument("--workdir", default="runs/tiny_decoder")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    model = create_model("sam_tiny_nuclei", pretrained=args.weights or True, decoder=False)
    model.image_encoder.trainable = False
    decoder = InstanceDecoder(DecoderConfig(embed_dim=model.cfg.embed_dim,
                                            initial_features=args.features, depth=3))  # fmt: skip
    config = DecoderTrainConfig(steps=args.steps, batch_size=args.batch_size,
                                learning_rate=args.lr, seed=args.seed)  # fmt: skip
    styles = style_names(args.styles)
    sampler = make_sampler(model.cfg.input_size[0], styles=styles, edge_level=args.edge_level)
    trainer = DecoderTrainer(model, decoder, sampler, config,
                             workdir=args.workdir, pool=args.pool)  # fmt: skip
    t0 = time.time()
    trainer.fit(max_steps=args.chunk)
    step = int(trainer.step.numpy())
    print(f"trained to step {step} of {args.steps} in {time.time() - t0:.0f} s this run")
    if step < args.steps:
        return
    out = pathlib.Path(args.out)
    state = export_decoder_state(decoder)
    write_atomic(out, lambda f: np.savez(f, **state))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, "
          f"{sum(v.size for v in state.values())} parameters)")  # fmt: skip


if __name__ == "__main__":
    main()
