"""Train ``sam_tiny_nuclei`` from scratch on synthetic nuclei and export its weights.

Re-run it with ``python scripts/train_tiny.py`` (resumes from ``--workdir`` if interrupted).
The shipped weights came from the defaults below; see docs/tiny-model.md for the run time.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import napari_sam  # noqa: F401  (TensorFlow's defaults, set before keras imports it)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's CPU kernels crashed (heap corruption) in this training graph on TF 2.21.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from napari_sam._atomic import write_atomic  # noqa: E402
from napari_sam.train.synthetic import NucleiParams, make_nuclei_2d, make_nuclei_3d  # noqa: E402
from napari_sam.train.training import TrainConfig, Trainer  # noqa: E402
from napari_sam.weights import create_model, model_config  # noqa: E402
from napari_sam.weights.key_map import export_state_dict  # noqa: E402
from napari_sam.weights.registry import TINY_NUCLEI_WEIGHTS  # noqa: E402

TRAIN_SEED_OFFSET = 1_000_000  # evaluation uses seeds below this; training never does


def _normalise(image, ref=None):
    lo, hi = np.percentile(image if ref is None else ref, [0.1, 99.9])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1) * 255


def value_range(text: str) -> tuple[float, float]:
    """``LOW:HIGH`` of a command-line option as two floats (argparse's ``type``)."""
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH (two numbers), got {text!r}") from None
    if not low <= high:
        raise argparse.ArgumentTypeError(f"expected LOW <= HIGH, got {text!r}")
    return low, high


def make_sampler(size: int = 256, zoom=(0.7, 1.6), styles=None, edge_level=None,
                 blur_scale=None):
    """``sample(rng, step)`` giving a normalised (size, size, 3) image and its labels.

    Images are drawn at ``size / zoom`` pixels and resized to ``size``, so nuclei appear from
    ``zoom[0]`` to ``zoom[1]`` times the generator's default size (10 to 18 px radius, the
    scale the model is evaluated at). ``styles``: names of :mod:`napari_sam.train.styles`,
    one drawn per image (default: the default style only). ``edge_level``: a ``(low, high)``
    range of :class:`~napari_sam.train.synthetic.NucleiParams` ``edge_level`` drawn per image
    (default: the generator's). ``blur_scale``: a ``(low, high)`` range of factors on the
    style's PSF width (``blur_sigma``), drawn per image (default: the style's own); real
    nuclei's edges are softer than the styles' (StarDist's DSB image: an edge width of
    0.11 of the diameter, the default style 0.08).
    """
    from napari_sam.train.styles import style_params

    styles = list(styles or ["default"])

    def sample(rng, step=0):
        while True:  # a slice of a 3-D stack can miss every nucleus: draw again
            image, labels = _draw(rng)
            if labels.max() > 0:
                return image, labels

    def _draw(rng):
        seed = TRAIN_SEED_OFFSET + int(rng.integers(1 << 30))
        params = style_params(styles[int(rng.integers(len(styles)))]) if len(styles) > 1 else {}
        if edge_level is not None:
            params["edge_level"] = float(rng.uniform(*edge_level))
        if blur_scale is not None:
            base = params.get("blur_sigma", NucleiParams.blur_sigma)
            params["blur_sigma"] = base * float(rng.uniform(*blur_scale))
        side = int(round(size / np.exp(rng.uniform(np.log(zoom[0]), np.log(zoom[1])))))
        if rng.random() < 0.3:  # a slice of a 3-D stack: out-of-focus nuclei, stack-wide range
            stack, labels3 = make_nuclei_3d((8, side, side), seed=seed, **params)
            z = int(rng.integers(1, 7))
            image, labels = _normalise(stack[z], ref=stack), labels3[z]
        else:
            image, labels = make_nuclei_2d((side, side), seed=seed, **params)
            image = _normalise(image)
        if rng.random() < 0.5:
            image = 255 * (image / 255) ** rng.uniform(0.6, 1.5)  # contrast variation
        if side != size:
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
            labels = np.asarray(
                Image.fromarray(labels.astype(np.int32)).resize((size, size), Image.NEAREST)
            )
        return np.repeat(image[..., None], 3, axis=-1).astype(np.float32), labels

    return sample


def init_from_scratch(model, seed: int, fourier_std: float = 2.0) -> None:
    """Initialisation choices that made prompting learnable from scratch (docs/tiny-model.md).

    - Random Fourier features with std ``fourier_std`` instead of SAM's 1: with our nuclei
      (20 to 36 px across in a 256 px input) the kernel of the positional encoding is then
      about as wide as a nucleus.
    - Every decoder attention starts with its key projection equal to its query projection,
      so a point token attends to (and is attended by) the image tokens around it from the
      first step instead of having to discover positional matching.
    """
    from napari_sam.model.transformer import DecoderAttention

    g = model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    g.assign(np.random.default_rng(seed).normal(0, fourier_std, g.shape).astype(np.float32))
    for layer in model.mask_decoder._flatten_layers():
        if isinstance(layer, DecoderAttention):
            layer.k_proj.kernel.assign(layer.q_proj.kernel)
            layer.k_proj.bias.assign(layer.q_proj.bias)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--workdir", default="runs/sam_tiny_nuclei")
    parser.add_argument("--out", default=str(TINY_NUCLEI_WEIGHTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--init", default=None, help="start from these weights (.npz/.pth) instead of scratch"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    parser.add_argument("--box-probability", type=float, default=0.5)
    parser.add_argument("--box-jitter", type=float, default=0.1)
    parser.add_argument("--mask-prompt-probability", type=float, default=1.0)
    parser.add_argument(
        "--styles", default="default", help="comma-separated styles of "
        "napari_sam.train.styles, one drawn per image, or 'all' (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--edge-level", type=value_range, default=None, metavar="LOW:HIGH",
        help="the labels' edge at this fraction of a nucleus's intensity, drawn per image "
        "(NucleiParams.edge_level; 0.5: half maximum, where people draw). Default: the "
        "generator's (0)",
    )  # fmt: skip
    parser.add_argument(
        "--zoom", type=value_range, default="0.7:1.6", metavar="LOW:HIGH",
        help="nuclei appear from LOW to HIGH times the generator's default size (10 to 18 "
        "px radius); default: %(default)s",
    )  # fmt: skip
    parser.add_argument(
        "--blur-scale", type=value_range, default=None, metavar="LOW:HIGH",
        help="the PSF width (blur_sigma) times a factor from LOW to HIGH, drawn per image "
        "(default: each style's own)",
    )  # fmt: skip
    parser.add_argument(
        "--freeze-encoder", action="store_true",
        help="train the prompt encoder and mask decoder only (the image encoder, and so the "
        "embeddings its instance decoder reads, stay as they are)",
    )  # fmt: skip
    parser.add_argument(
        "--export-only", action="store_true",
        help="write --out from the latest checkpoint in --workdir without training",
    )  # fmt: skip
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    cfg = model_config("sam_tiny_nuclei")
    model = create_model("sam_tiny_nuclei", pretrained=args.init or False)
    if not args.init:
        init_from_scratch(model, args.seed)
    # From scratch, a dice-dominated loss learns; the paper's 20:1 focal:dice (meant for
    # fine-tuning a pretrained model) collapsed to empty masks in our trials.
    config = TrainConfig(
        steps=args.steps, batch_size=2, objects_per_image=8, correction_rounds=1,
        focal_weight=1.0, learning_rate=args.lr, warmup_steps=args.warmup, seed=args.seed,
        interior_point_probability=0.5, box_probability=args.box_probability,
        box_jitter=args.box_jitter, mask_prompt_probability=args.mask_prompt_probability,
        freeze_image_encoder=args.freeze_encoder,
    )  # fmt: skip
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    from napari_sam.train.styles import style_names

    styles = style_names(args.styles)
    sampler = make_sampler(cfg.input_size[0], zoom=args.zoom, styles=styles,
                           edge_level=args.edge_level, blur_scale=args.blur_scale)  # fmt: skip
    trainer = Trainer(model, sampler, config, workdir=workdir)
    t0 = time.time()
    if not args.export_only:
        trainer.fit()
    print(f"trained to step {int(trainer.step.numpy())} in {time.time() - t0:.0f} s this run")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = export_state_dict(model)
    write_atomic(out, lambda f: np.savez(f, **state))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
