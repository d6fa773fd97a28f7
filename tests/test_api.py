"""The public API against the spec (``/work/shared/spec/sam-api.md``): names, signatures, shapes.

The expected signatures are written out here on purpose (copied from the spec): they are a
contract, and the test must fail if either side changes.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import warnings

import numpy as np
import pytest

import napari_sam
from napari_sam import (
    ImageResizer,
    SAMPredictor,
    SegmentAnythingModel,
    SegmentAnythingModelConfig,
    create_model,
    list_models,
)
from napari_sam.weights import model_config

from small_configs import NARROW_ENCODER_128 as TINY

K = 3  # nb_multimask_outputs of the registered models
H0, W0 = 50, 70  # original image size used with the predictor

# --------------------------------------------------------------------------- spec contract

# The spec's signatures, verbatim. ``ANY`` marks a parameter the spec lists without a
# default where an added default is harmless (it cannot break a caller that follows the spec).
ANY = object()

SPEC_CONFIG = (
    "name='', url='', in_channels=3, input_size=(1024, 1024), fixed_input_size=True, "
    "embed_dim=256, nb_multimask_outputs=3, mask_threshold=0.0, encoder_patch_size=16, "
    "encoder_embed_dim=768, encoder_nb_blocks=12, encoder_nb_heads=12, encoder_mlp_ratio=4.0, "
    "encoder_drop_rate=0.0, encoder_attn_drop_rate=0.0, encoder_drop_path_rate=0.0, "
    "encoder_norm_layer='layer_norm_eps_1e-6', encoder_act_layer='gelu', encoder_qkv_bias=True, "
    "encoder_global_attn_indices=(2, 5, 8, 11), encoder_window_size=14, "
    "prompt_mask_hidden_dim=16, decoder_nb_blocks=2, decoder_nb_heads=8, "
    "decoder_mlp_channels=2048, decoder_iou_head_depth=3, decoder_iou_hidden_dim=256, "
    "mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), "
    "first_conv='image_encoder/patch_embed/proj'"
)

SPEC_METHODS = [
    (SegmentAnythingModel, "call", "inputs, training=False, multimask_output=False, "
     "return_logits=False"),
    (SegmentAnythingModel, "grid_size", "input_size=None"),
    (SegmentAnythingModel, "mask_size", "input_size=None"),
    (SAMPredictor, "__init__", "model, preprocessing=None"),
    (SAMPredictor, "set_image", "image"),
    (SAMPredictor, "clear_image", ""),
    (SAMPredictor, "preprocess_masks", "mask"),
    (SAMPredictor, "__call__", "points=None, labels=None, boxes=None, masks=None, "
     "multimask_output=True, return_logits=False"),
    (ImageResizer, "__init__", "src_size, dst_size, pad_only=False"),
    (ImageResizer, "pad_image", "image, channels_last=True"),
    (ImageResizer, "postprocess_mask", "mask, threshold=None"),
    (ImageResizer, "scale_boxes", "boxes"),
    (ImageResizer, "scale_image", "image, channels_last=True"),
    (ImageResizer, "scale_points", "points"),
    (ImageResizer, "scale_to_size", "image, size, channels_last"),
    (ImageResizer, "unscale_image", "image, channels_last=True"),
]  # fmt: skip


def parse_spec(text: str) -> list[tuple[str, str, object]]:
    """``"a, b=1, **kw"`` -> [(name, kind, default)], defaults evaluated as literals."""
    args = ast.parse(f"def f({text}): pass").body[0].args
    plain = args.posonlyargs + args.args
    defaults = [inspect.Parameter.empty] * (len(plain) - len(args.defaults))
    defaults += [ast.literal_eval(d) for d in args.defaults]
    out = [(a.arg, "POSITIONAL_OR_KEYWORD", d) for a, d in zip(plain, defaults, strict=True)]
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL", inspect.Parameter.empty))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        default = inspect.Parameter.empty if d is None else ast.literal_eval(d)
        out.append((a.arg, "KEYWORD_ONLY", default))
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD", inspect.Parameter.empty))
    return out


def actual_params(func) -> list[tuple[str, str, object]]:
    params = list(inspect.signature(func).parameters.values())
    return [(p.name, p.kind.name, p.default) for p in params if p.name != "self"]


def assert_matches_spec(func, spec: str, allow_added_default=()):
    expected, got = parse_spec(spec), actual_params(func)
    assert [e[:2] for e in expected] == [g[:2] for g in got], f"{func.__qualname__}: {got}"
    for (name, _, want), (_, _, have) in zip(expected, got, strict=True):
        if want is inspect.Parameter.empty and name in allow_added_default:
            continue
        assert have == want and type(have) is type(want), f"{func.__qualname__}({name}={have!r})"


def test_top_level_names():
    for name in (
        "SegmentAnythingModel",
        "SegmentAnythingModelConfig",
        "SAMPredictor",
        "ImageResizer",
        "create_model",
        "list_models",
    ):
        assert name in napari_sam.__all__
        assert getattr(napari_sam, name) is not None
    with pytest.raises(AttributeError):
        napari_sam.not_a_name  # noqa: B018


def test_config_fields_match_spec_in_order():
    spec = parse_spec(SPEC_CONFIG)
    fields = [f for f in dataclasses.fields(SegmentAnythingModelConfig)]
    spec_fields = fields[: len(spec)]
    assert [f.name for f in spec_fields] == [name for name, _, _ in spec]
    for f, (name, _, default) in zip(spec_fields, spec, strict=True):
        assert f.default == default and type(f.default) is type(default), name
    # The constructor takes them in the same order, with the same defaults.
    params = actual_params(SegmentAnythingModelConfig)[: len(spec)]
    assert params == spec
    # A default instance holds the spec's defaults (nothing changed by __post_init__).
    cfg = SegmentAnythingModelConfig()
    for name, _, default in spec:
        value = getattr(cfg, name)
        assert value == default and type(value) is type(default), name


def test_config_has_no_fields_beyond_spec():
    names = [f.name for f in dataclasses.fields(SegmentAnythingModelConfig)]
    assert names == [name for name, _, _ in parse_spec(SPEC_CONFIG)]


@pytest.mark.parametrize(("cls", "method", "spec"), SPEC_METHODS, ids=lambda v: str(v)[:40])
def test_method_signatures_match_spec(cls, method, spec):
    assert_matches_spec(getattr(cls, method), spec, allow_added_default={"channels_last"})


def test_model_constructor_and_properties():
    assert actual_params(SegmentAnythingModel.__init__)[0][0] == "cfg"
    for name in ("dummy_inputs", "mask_threshold"):
        assert isinstance(inspect.getattr_static(SegmentAnythingModel, name), property), name
    assert isinstance(inspect.getattr_static(ImageResizer, "scale_to_size"), staticmethod)
    for name in ("to_dict", "from_dict"):
        assert callable(getattr(SegmentAnythingModelConfig, name))


def test_registry_signatures():
    assert_matches_spec(create_model, "name, pretrained=False, in_channels=3, **overrides")
    names = list_models()
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h"} <= set(names)


def test_registered_architectures():
    # Meta's published architectures (build_sam.py): width, depth, heads, global blocks.
    expected = {
        "sam_vit_b": (768, 12, 12, (2, 5, 8, 11)),
        "sam_vit_l": (1024, 24, 16, (5, 11, 17, 23)),
        "sam_vit_h": (1280, 32, 16, (7, 15, 23, 31)),
    }
    for name, (dim, depth, heads, global_idx) in expected.items():
        cfg = model_config(name)
        assert cfg.name == name
        got = (
            cfg.encoder_embed_dim,
            cfg.encoder_nb_blocks,
            cfg.encoder_nb_heads,
            cfg.encoder_global_attn_indices,
        )
        assert got == (dim, depth, heads, global_idx)
        assert cfg.input_size == (1024, 1024) and cfg.embed_dim == 256
        assert cfg.url.endswith(".pth")


# ------------------------------------------------------------------------------- shapes


@pytest.fixture(scope="module")
def model():
    return create_model("sam_vit_b", **TINY)


@pytest.fixture(scope="module")
def predictor(model):
    pred = SAMPredictor(model)
    rng = np.random.default_rng(0)
    pred.set_image(rng.integers(0, 256, (H0, W0, 3), dtype=np.uint8))
    return pred


@pytest.mark.parametrize("multimask", [True, False])
def test_model_call_on_dummy_inputs(model, multimask):
    h, w = model.cfg.input_size
    mh, mw = model.mask_size()
    k = K if multimask else 1
    masks, scores, logits = model(model.dummy_inputs, multimask_output=multimask)
    assert tuple(masks.shape) == (1, k, h, w) and masks.dtype.name == "bool"
    assert tuple(scores.shape) == (1, k) and scores.dtype.is_floating
    assert tuple(logits.shape) == (1, k, mh, mw) and logits.dtype.is_floating
    up, _, logits2 = model(model.dummy_inputs, multimask_output=multimask, return_logits=True)
    assert tuple(up.shape) == (1, k, h, w) and up.dtype.is_floating
    np.testing.assert_array_equal(up.numpy() > model.mask_threshold, masks.numpy())
    np.testing.assert_allclose(logits2.numpy(), logits.numpy(), rtol=1e-5, atol=1e-5)


def test_dummy_inputs_shapes(model):
    h, w = model.cfg.input_size
    d = model.dummy_inputs
    assert tuple(d["images"].shape) == (1, h, w, model.cfg.in_channels)
    n, m1, _ = d["points"].shape
    assert tuple(d["labels"].shape) == (n, m1) and d["boxes"].shape[-1] == 4
    assert tuple(d["masks"].shape[2:]) == model.mask_size()


@pytest.mark.parametrize("absent", ["all", "no_boxes_masks", "only_boxes", "only_masks"])
def test_model_call_with_prompts_absent(model, absent):
    h, w = model.cfg.input_size
    mh, mw = model.mask_size()
    n = 2
    rng = np.random.default_rng(1)
    inputs = {"images": rng.normal(size=(n, h, w, 3)).astype(np.float32)}
    if absent == "no_boxes_masks":  # points without labels: labels default to foreground
        inputs["points"] = rng.uniform(0, h, (n, 2, 2)).astype(np.float32)
    elif absent == "only_boxes":
        inputs["boxes"] = np.tile(np.float32([[[10, 20, 90, 100]]]), (n, 1, 1))
    elif absent == "only_masks":
        inputs["masks"] = rng.normal(size=(n, 1, mh, mw)).astype(np.float32)
    masks, scores, logits = model(inputs, multimask_output=True)
    assert tuple(masks.shape) == (n, K, h, w)
    assert tuple(scores.shape) == (n, K)
    assert tuple(logits.shape) == (n, K, mh, mw)
    assert np.all(np.isfinite(logits.numpy())) and np.all(np.isfinite(scores.numpy()))


def test_model_call_points_without_labels_are_foreground(model):
    h, w = model.cfg.input_size
    rng = np.random.default_rng(2)
    images = rng.normal(size=(1, h, w, 3)).astype(np.float32)
    points = np.float32([[[30, 40], [90, 70]]])
    a = model({"images": images, "points": points}, return_logits=True)
    b = model({"images": images, "points": points, "labels": np.ones((1, 2))}, return_logits=True)
    c = model({"images": images, "points": points, "labels": np.zeros((1, 2))}, return_logits=True)
    np.testing.assert_allclose(a[2].numpy(), b[2].numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[2].numpy(), c[2].numpy(), atol=1e-4)


def test_grid_and_mask_size(model):
    p = model.cfg.encoder_patch_size
    h, w = model.cfg.input_size
    assert model.grid_size() == (h // p, w // p)
    assert model.mask_size() == (4 * h // p, 4 * w // p)
    assert model.grid_size((256, 64)) == (256 // p, 64 // p)
    assert model.mask_size((256, 64)) == (4 * 256 // p, 4 * 64 // p)
    assert model.grid_size((1024, 1024)) == (64, 64)
    assert model.mask_size((1024, 1024)) == (256, 256)
    assert model.mask_threshold == model.cfg.mask_threshold == 0.0


def test_variable_input_size_and_fixed_input_size():
    flexible = create_model("sam_vit_b", fixed_input_size=False, **TINY)
    images = np.zeros((1, 64, 96, 3), np.float32)
    masks, scores, logits = flexible({"images": images}, multimask_output=False)
    assert tuple(masks.shape) == (1, 1, 64, 96)
    assert tuple(scores.shape) == (1, 1)
    assert tuple(logits.shape) == (1, 1, *flexible.mask_size((64, 96)))
    fixed = create_model("sam_vit_b", **TINY)
    with pytest.raises(ValueError, match="fixed_input_size"):
        fixed({"images": images})


def test_config_round_trip(model):
    cfg = model.cfg
    d = cfg.to_dict()
    assert isinstance(d, dict)
    assert SegmentAnythingModelConfig.from_dict(d) == cfg
    assert SegmentAnythingModelConfig.from_dict(SegmentAnythingModelConfig().to_dict()) == (
        SegmentAnythingModelConfig()
    )
    with pytest.raises(ValueError, match="not_a_field"):
        SegmentAnythingModelConfig.from_dict({**d, "not_a_field": 1})
    clone = SegmentAnythingModel.from_config(model.get_config())
    assert clone.cfg == cfg
    assert [tuple(v.shape) for v in clone.weights] == [tuple(v.shape) for v in model.weights]


def test_config_errors():
    with pytest.raises(ValueError, match=r"mean and std.*channel.*\(1\)"):
        SegmentAnythingModelConfig(in_channels=1)
    with pytest.raises(ValueError, match="mean and std"):
        SegmentAnythingModelConfig(std=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"input_size.*patch_size"):
        SegmentAnythingModelConfig(input_size=(1000, 1024))
    with pytest.raises(ValueError, match=r"input_size.*patch_size"):
        model_config("sam_vit_b", input_size=(128, 120))
    with pytest.raises(ValueError, match="input_size"):
        SegmentAnythingModelConfig(input_size=(0, 16))


def test_predictor_unbatched_shapes(predictor, model):
    mh, mw = model.mask_size()
    pts, lbl = np.array([[10.0, 20.0], [40.0, 30.0]]), np.array([1, 0])
    for multi, k in ((True, K), (False, 1)):
        masks, scores, logits = predictor(points=pts, labels=lbl, multimask_output=multi)
        assert masks.shape == (k, H0, W0) and masks.dtype == bool
        assert scores.shape == (k,)
        assert logits.shape == (k, mh, mw)
    up, _, _ = predictor(points=pts, labels=lbl, return_logits=True)
    assert up.shape == (K, H0, W0) and up.dtype.kind == "f"
    assert isinstance(up, np.ndarray)


def test_predictor_batched_and_multi_box_shapes(predictor, model):
    mh, mw = model.mask_size()
    n = 3
    pts = np.tile(np.array([[[10.0, 20.0]]]), (n, 1, 1))
    masks, scores, logits = predictor(points=pts, labels=np.ones((n, 1)), multimask_output=False)
    assert masks.shape == (n, 1, H0, W0)
    assert scores.shape == (n, 1)
    assert logits.shape == (n, 1, mh, mw)
    boxes = np.array([[0, 0, 20, 20], [10, 5, 60, 40], [30, 30, 70, 50]], float)
    masks, scores, logits = predictor(boxes=boxes)
    assert masks.shape == (3, K, H0, W0)
    assert scores.shape == (3, K)
    assert logits.shape == (3, K, mh, mw)
    # One box -> unbatched result; batched boxes (N, M2, 4) keep N.
    assert predictor(boxes=boxes[:1])[0].shape == (K, H0, W0)
    assert predictor(boxes=boxes[:, None])[0].shape == (3, K, H0, W0)
    # A mask prompt from a previous call's logits.
    masks, _, _ = predictor(boxes=boxes[:1], masks=logits[0, :1])
    assert masks.shape == (K, H0, W0)


def test_preprocess_masks_shapes(predictor, model):
    mh, mw = model.mask_size()
    rng = np.random.default_rng(3)
    assert predictor.preprocess_masks(rng.normal(size=(2, H0, W0))).shape == (2, mh, mw)
    assert predictor.preprocess_masks(rng.normal(size=(4, 1, H0, W0))).shape == (4, 1, mh, mw)
    mask = predictor.preprocess_masks(rng.normal(size=(1, H0, W0)))
    masks, _, _ = predictor(points=np.array([[5.0, 5.0]]), labels=np.array([1]), masks=mask)
    assert masks.shape == (K, H0, W0)


def test_predictor_without_image(model):
    pred = SAMPredictor(model)
    with pytest.raises(RuntimeError, match="set_image"):
        pred(points=np.array([[1.0, 1.0]]), labels=np.array([1]))
    with pytest.raises(RuntimeError, match="set_image"):
        pred.preprocess_masks(np.zeros((1, 8, 8)))
    pred.set_image(np.zeros((16, 16, 3), np.uint8))
    assert pred(points=np.array([[1.0, 1.0]]), labels=np.array([1]))[0].shape == (K, 16, 16)
    pred.clear_image()
    with pytest.raises(RuntimeError, match="set_image"):
        pred(points=np.array([[1.0, 1.0]]), labels=np.array([1]))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(points=np.array([[1.0, 2.0]])), "labels"),
        (dict(labels=np.array([1])), "labels"),
        (dict(points=np.array([1.0, 2.0]), labels=np.array([1])), "points"),
        (dict(points=np.array([[1.0, 2.0, 3.0]]), labels=np.array([1])), "points"),
        (dict(points=np.array([[1.0, 2.0], [3.0, 4.0]]), labels=np.array([1])), "labels"),
        (dict(points=np.array([[np.nan, 2.0]]), labels=np.array([1])), "points"),
        (dict(points=np.array([[W0 + 1.0, 2.0]]), labels=np.array([1])), "points"),
        (dict(points=np.array([[1.0, -0.5]]), labels=np.array([1])), "points"),
        (dict(boxes=np.array([1.0, 2.0, 3.0, 4.0])), "boxes"),
        (dict(boxes=np.array([[1.0, 2.0, 3.0]])), "boxes"),
        (dict(boxes=np.array([[0.0, 0.0, 10.0, H0 + 5.0]])), "boxes"),
        (dict(masks=np.zeros((1, 10, 10))), "masks"),
        (dict(masks=np.zeros((10, 10))), "masks"),
        (dict(points=np.zeros((2, 1, 2)), labels=np.ones((2, 1)), boxes=np.zeros((3, 1, 4))), "N"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_predictor_errors_name_the_argument(predictor, kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        predictor(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(points=[[1.0, 2.0]], labels=[7]), r"labels must be 1 .* or 0 .*, got 7"),
        (dict(points=[[1.0, 2.0], [3, 4]], labels=[1, -5]), r"labels .* got -5"),
        (dict(points=[[1.0, 2.0]], labels=[0.5]), r"labels .* got 0\.5"),
        (dict(points=[[1.0, 2.0]], labels=[-1]), r"labels .* got -1"),  # Meta's padding
        (dict(points=np.zeros((2, 1, 2)), labels=[[1], [2]]), r"labels .* got 2"),
        (dict(boxes=[[10.0, 2.0, 3.0, 4.0]]), r"boxes .* x0 <= x1 .* inverted"),
        (dict(boxes=[[1.0, 20.0, 3.0, 4.0]]), r"boxes .* y0 <= y1"),
        (dict(boxes=[[1.0, 2.0, 3.0, 4.0], [9.0, 2.0, 3.0, 4.0]]), r"boxes .* 1 inverted"),
        (dict(boxes=np.array([[[1.0, 2.0, 0.5, 4.0]]])), r"boxes"),
        (dict(boxes=[[np.nan, 2.0, 3.0, 4.0]]), r"boxes contains NaN"),
    ],
)
def test_predictor_refuses_bad_labels_and_inverted_boxes(predictor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predictor(**kwargs)


def test_predictor_accepts_valid_labels_and_degenerate_boxes(predictor):
    pts = np.array([[1.0, 2.0], [3.0, 4.0]])
    for labels in ([1, 0], np.array([True, False]), np.array([1.0, 0.0], np.float32)):
        assert predictor(points=pts, labels=labels)[0].shape == (K, H0, W0)
    # a one-pixel box (x0 == x1, y0 == y1) is not inverted
    assert predictor(boxes=np.array([[5.0, 6.0, 5.0, 6.0]]))[0].shape == (K, H0, W0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_set_image_refuses_non_finite_pixels(model, bad):
    image = np.full((H0, W0, 3), 100.0, np.float32)
    image[3, 4, 1] = bad
    pred = SAMPredictor(model)
    with pytest.raises(ValueError, match=r"image: contains NaN or infinite values \(1 of"):
        pred.set_image(image)
    assert not pred.is_image_set
    with pytest.raises(ValueError, match="NaN or infinite"):
        pred.preprocess_image(image)


def test_set_image_warns_for_float_images_in_0_1(model):
    rng = np.random.default_rng(1)
    unit = rng.random((H0, W0, 3)).astype(np.float32)
    pred = SAMPredictor(model)
    with pytest.warns(UserWarning, match=r"image: float values in \[0, 1\].*multiply by 255"):
        pred.set_image(unit)
    with_warning = pred.embedding.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the values are kept as they are (parity with Meta): same embedding as without warning
        SAMPredictor(model, preprocessing=pred.preprocessing).set_image(unit)  # custom: no warning
        pred.set_image(unit * 255)  # [0, 255]: no warning
        pred.set_image(np.zeros((H0, W0, 3), np.float32))  # all zero: no warning
        pred.set_image(unit - 0.5)  # pre-normalised (negative values): no warning
        pred.set_image((unit > 0.5).astype(np.uint8))  # integers are never warned about
    x, _ = pred.preprocess_image(unit)
    np.testing.assert_array_equal(with_warning, pred._embed(x[None]).numpy())


def test_predictor_image_and_mask_errors(predictor, model):
    with pytest.raises(ValueError, match="image"):
        SAMPredictor(model).set_image(np.zeros((H0, W0, 4), np.uint8))
    with pytest.raises(ValueError, match="image"):
        SAMPredictor(model).set_image(np.zeros((H0, W0), np.uint8))
    with pytest.raises(ValueError, match="mask"):
        predictor.preprocess_masks(np.zeros((1, H0 + 1, W0)))
    with pytest.raises(ValueError, match="mask"):
        predictor.preprocess_masks(np.zeros((H0, W0)))
    with pytest.raises(ValueError, match="masks"):  # full-size mask passed as a prompt
        predictor(masks=np.zeros((1, H0, W0)))


# -------------------------------------------------------------------------- no retracing


def test_no_retracing(model):
    pred = SAMPredictor(model)
    rng = np.random.default_rng(4)
    first = rng.integers(0, 256, (H0, W0, 3), dtype=np.uint8)
    second = rng.integers(0, 256, (97, 41, 3), dtype=np.uint8)
    pred.set_image(first)
    pred(points=np.array([[3.0, 4.0]]), labels=np.array([1]), multimask_output=True)
    pred(points=np.array([[3.0, 4.0]]), labels=np.array([1]), multimask_output=False)
    warm = pred.trace_count()
    assert warm >= 1
    mh, mw = model.mask_size()
    calls = 0
    for image in (first, second):
        pred.set_image(image)
        h, w = image.shape[:2]
        combos = itertools.product([None, 1, 2, 3, 4, 5], [0, 1], [False, True])
        for (m1, m2, with_mask), n in itertools.product(combos, [None, 1, 2, 3, 4]):
            lead = () if n is None else (n,)
            kwargs = {}
            if m1 is not None:
                kwargs["points"] = rng.uniform(0, [w, h], (*lead, m1, 2))
                kwargs["labels"] = rng.integers(0, 2, (*lead, m1))
            if m2:
                kwargs["boxes"] = np.broadcast_to([[1.0, 2.0, w - 1.0, h - 2.0]], (*lead, 1, 4))
            if with_mask:
                kwargs["masks"] = rng.normal(size=(*lead, 1, mh, mw)).astype(np.float32)
            if n is not None and not kwargs:
                continue  # no prompt at all cannot be batched
            multi = bool(calls % 2)
            masks, _, _ = pred(**kwargs, multimask_output=multi)
            assert masks.shape == (*lead, K if multi else 1, h, w)
            calls += 1
    assert pred.trace_count() == warm, f"retraced over {calls} calls"
