"""End-to-end parity with Meta's reference (segment-anything 1.0 + torch) on perturbed weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam import SAMPredictor, create_model
from napari_sam.weights import model_config

from ref_models import build_reference, reference_predictor, relative_error, save_like_official
from small_configs import PARITY_256 as SMALL

POINTS = np.array([[50.0, 60.0], [120.0, 33.0], [170.0, 110.0]])
LABELS = np.array([1, 0, 1])
BOX = np.array([20.0, 30.0, 140.5, 120.0])


def prompt_cases(shape):
    h, w = shape
    pts = POINTS * [w / 200, h / 150]
    box = BOX * [w / 200, h / 150, w / 200, h / 150]
    return {
        "one_point": dict(point_coords=pts[:1], point_labels=LABELS[:1]),
        "points": dict(point_coords=pts, point_labels=LABELS),
        "box": dict(box=box),
        "points_box": dict(point_coords=pts[:2], point_labels=LABELS[:2], box=box),
    }


def ours(pred, case, mask=None, multimask=True, return_logits=True):
    box = case.get("box")
    return pred(
        points=case.get("point_coords"),
        labels=case.get("point_labels"),
        boxes=None if box is None else box[None],
        masks=mask,
        multimask_output=multimask,
        return_logits=return_logits,
    )


def theirs(ref, case, mask=None, multimask=True, return_logits=True):
    with torch.no_grad():
        return ref.predict(
            multimask_output=multimask, return_logits=return_logits, mask_input=mask, **case
        )


def assert_thresholded_masks_match(pred, ref, case, mask=None):
    """Boolean masks (fused 4x upscaling and threshold) equal the reference's and our own
    thresholded logits."""
    for multimask in (True, False):
        got = ours(pred, case, mask, multimask, return_logits=False)[0]
        want = theirs(ref, case, mask, multimask, return_logits=False)[0]
        logits = ours(pred, case, mask, multimask)[0]
        assert got.dtype == bool and got.shape == want.shape
        assert (got == want).mean() >= 0.999
        # two decodes: oneDNN's rounding varies a little from run to run near the threshold
        assert (got != (logits > pred.model.mask_threshold)).mean() <= 1e-4


def assert_close(got, want, what):
    masks, scores, logits = got
    rmasks, rscores, rlogits = want
    assert logits.shape == rlogits.shape and masks.shape == rmasks.shape, what
    assert relative_error(logits, rlogits) < 1e-3, what
    assert np.abs(scores - rscores).max() < 1e-3, what
    agree = ((masks > 0) == (rmasks > 0)).mean()
    assert agree >= 0.999, f"{what}: masks agree on {agree:.5f}"


def assert_every_prompt_kind(pred, ref, shape, previous_logits=False):
    """Ours equal the reference's for every prompt kind, with and without multimask output
    (and, with ``previous_logits``, each with the reference's best low-res logits as a mask
    prompt)."""
    for name, case in prompt_cases(shape).items():
        for multimask in (True, False):
            want = theirs(ref, case, multimask=multimask)
            assert_close(ours(pred, case, multimask=multimask), want, f"{name} mm={multimask}")
            if previous_logits:
                prev = want[2][np.argmax(want[1])][None]
                want = theirs(ref, case, prev, multimask)
                assert_close(ours(pred, case, prev, multimask), want, name)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cfg = model_config("sam_vit_b", **SMALL)
    sam = build_reference(cfg, seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    save_like_official(sam, path)
    return sam, path, create_model("sam_vit_b", pretrained=path, **SMALL)


@pytest.mark.parametrize("shape", [(150, 200), (256, 97), (300, 300)])
def test_small_model_all_prompt_kinds(small, shape):
    sam, _, model = small
    img = np.random.default_rng(shape[0]).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ref, pred = reference_predictor(sam), SAMPredictor(model)
    ref.set_image(img)
    pred.set_image(img)
    emb = pred.embedding.numpy()[0].transpose(2, 0, 1)
    assert relative_error(emb, ref.features.numpy()[0]) < 1e-4
    for name, case in prompt_cases(shape).items():
        for multimask in (True, False):
            want = theirs(ref, case, multimask=multimask)
            assert_close(ours(pred, case, multimask=multimask), want, f"{name} mm={multimask}")
            # the previous low-res logits as a mask prompt, alone and with the prompts
            prev = want[2][np.argmax(want[1])][None]
            assert_close(
                ours(pred, case, prev, multimask), theirs(ref, case, prev, multimask), name
            )
    prev = theirs(ref, prompt_cases(shape)["box"])[2][:1]
    assert_close(ours(pred, {}, prev), theirs(ref, {}, prev), "mask only")
    # (256, 97): longest side = input size, the crop needs no second resize
    assert_thresholded_masks_match(pred, ref, prompt_cases(shape)["points_box"])
    assert_thresholded_masks_match(pred, ref, prompt_cases(shape)["one_point"], prev)


def test_batched_and_multi_box_prompts(small):
    sam, _, model = small
    img = np.random.default_rng(7).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    ref, pred = reference_predictor(sam), SAMPredictor(model)
    ref.set_image(img)
    pred.set_image(img)
    boxes = np.array([[10, 20, 100, 90], [50, 60, 230, 170], [0, 0, 240, 180.0]])
    # several boxes for one image: each box its own object (Meta: predict_torch with B boxes)
    masks, scores, logits = pred(boxes=boxes, multimask_output=False, return_logits=True)
    assert masks.shape == (3, 1, 180, 240) and scores.shape == (3, 1)
    for i, box in enumerate(boxes):
        want = theirs(ref, {"box": box}, multimask=False)
        assert_close((masks[i], scores[i], logits[i]), want, f"box {i}")
    # batched points (N, M1, 2): one object per row
    pts = np.array([[[30, 40], [100, 80]], [[200, 150], [20, 170]]], np.float32)
    lbl = np.array([[1, 0], [1, 1]])
    masks, scores, logits = pred(points=pts, labels=lbl, return_logits=True)
    assert masks.shape == (2, 3, 180, 240)
    for i in range(2):
        want = theirs(ref, dict(point_coords=pts[i], point_labels=lbl[i]))
        assert_close((masks[i], scores[i], logits[i]), want, f"batch {i}")


def test_flexible_input_size_matches_reference(small, tmp_path):
    """A 256-trained checkpoint run at 128: pos_embed resized (bicubic), rel-pos interpolated."""
    sam, path, _ = small
    cfg = model_config("sam_vit_b", **{**SMALL, "input_size": (128, 128)})
    ref_small = build_reference(cfg, seed=99)
    state = {k: v.clone() for k, v in sam.state_dict().items()}
    pos = state.pop("image_encoder.pos_embed").permute(0, 3, 1, 2)
    pos = torch.nn.functional.interpolate(pos, size=(8, 8), mode="bicubic", align_corners=False)
    rel = {k: state.pop(k) for k in list(state) if ".blocks.1.attn.rel_pos" in k}
    ref_small.load_state_dict({**state, **{k: ref_small.state_dict()[k] for k in rel}}, False)
    with torch.no_grad():
        ref_small.image_encoder.pos_embed.copy_(pos.permute(0, 2, 3, 1))
        attn = ref_small.image_encoder.blocks[1].attn  # Meta interpolates these on the fly
        attn.rel_pos_h, attn.rel_pos_w = (torch.nn.Parameter(rel[k]) for k in sorted(rel))
    img = np.random.default_rng(1).integers(0, 256, (100, 128, 3), dtype=np.uint8)
    ref = reference_predictor(ref_small)
    ref.set_image(img)
    case = prompt_cases((100, 128))["points_box"]
    want = theirs(ref, case)
    # (1) create_model with another input_size adapts the weights
    model = create_model("sam_vit_b", pretrained=path, **{**SMALL, "input_size": (128, 128)})
    pred = SAMPredictor(model)
    pred.set_image(img)
    assert_close(ours(pred, case), want, "input_size=128")
    # (2) fixed_input_size=False: the 256 model called directly at 128
    flex = create_model("sam_vit_b", pretrained=path, **SMALL, fixed_input_size=False)
    x, _ = pred.preprocess_image(img)
    emb = flex.embed_images(x[None]).numpy()
    assert relative_error(emb, pred.embedding.numpy()) < 1e-4
    fixed = create_model("sam_vit_b", pretrained=path, **SMALL)
    with pytest.raises(ValueError, match="fixed_input_size"):
        fixed.embed_images(x[None])


@pytest.fixture(scope="module")
def vit_b(tmp_path_factory):
    cfg = model_config("sam_vit_b")
    sam = build_reference(cfg, seed=11)
    path = tmp_path_factory.mktemp("vit_b") / "sam_vit_b_random.pth"
    save_like_official(sam, path)
    img = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ref = reference_predictor(sam)
    ref.set_image(img)
    pred = SAMPredictor(create_model("sam_vit_b", pretrained=path))
    pred.set_image(img)
    return ref, pred


def test_full_size_vit_b(vit_b):
    """The acceptance check: full-size sam_vit_b, non-square uint8 image, every prompt kind."""
    ref, pred = vit_b
    emb = pred.embedding.numpy()[0].transpose(2, 0, 1)
    assert relative_error(emb, ref.features.numpy()[0]) < 1e-3
    assert_every_prompt_kind(pred, ref, (480, 640), previous_logits=True)
    assert_thresholded_masks_match(pred, ref, prompt_cases((480, 640))["points_box"])
