"""Loading checkpoints: key map and transposes, the converted-copy cache, hostile and broken
files, mismatched checkpoints, ``in_channels`` and ``input_size`` adaptation, offline use.

Checkpoints are small reference models from ``ref_models.py`` saved like Meta's files.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pooch
import pytest
import requests
import torch
import torch.nn.functional as F  # noqa: N812

from napari_sam import SAMPredictor, create_model, list_models
from napari_sam.model.interpolate import resize_pos_embed, resize_rel_pos
from napari_sam.weights import (
    OFFICIAL_WEIGHTS,
    CheckpointError,
    WeightFile,
    WeightsUnavailableError,
    factory,
    loading,
    model_config,
    registry,
)
from napari_sam.weights.adapt import adapt_input_conv, adapt_mean_std

from ref_models import build_reference, save_like_official
from small_configs import TINY_PADDED_WINDOWS as SMALL

RGB_MEAN = model_config("sam_vit_b").mean
RGB_STD = model_config("sam_vit_b").std


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets its own empty weights cache."""
    path = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """(path of a small official-style .pth, its state dict as numpy arrays)."""
    sam = build_reference(model_config("sam_vit_b", **SMALL), seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    save_like_official(sam, path)
    return path, {k: v.numpy().copy() for k, v in sam.state_dict().items()}


@pytest.fixture
def count_reads(monkeypatch):
    """Count calls of ``read_pth`` made by the loader."""
    calls = []
    real = loading.read_pth

    def counting(path):
        calls.append(pathlib.Path(path))
        return real(path)

    monkeypatch.setattr(loading, "read_pth", counting)
    return calls


def weights_of(model):
    return [v.numpy() for v in model.weights]


def conv_t2k(w):  # torch Conv2d (out, in, kh, kw) -> Keras (kh, kw, in, out)
    return np.transpose(w, (2, 3, 1, 0))


def convtr_t2k(w):  # torch ConvTranspose2d (in, out, kh, kw) -> Keras (kh, kw, out, in)
    return np.transpose(w, (2, 3, 1, 0))


def save_state(state: dict[str, np.ndarray], path) -> pathlib.Path:
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, path)
    return pathlib.Path(path)


# ------------------------------------------------------------------ loading pretrained


def test_pretrained_fills_every_variable(ckpt):
    path, sd = ckpt
    model = create_model("sam_vit_b", pretrained=path, **SMALL)
    enc, pe, md = model.image_encoder, model.prompt_encoder, model.mask_decoder
    # A few variables against the torch tensors, with the documented transposes.
    pairs = [
        (enc.patch_embed.proj.kernel, conv_t2k(sd["image_encoder.patch_embed.proj.weight"])),
        (enc.patch_embed.proj.bias, sd["image_encoder.patch_embed.proj.bias"]),
        (enc.pos_embed, sd["image_encoder.pos_embed"]),
        (enc.blocks[0].attn.qkv.kernel, sd["image_encoder.blocks.0.attn.qkv.weight"].T),
        (enc.blocks[1].attn.proj.kernel, sd["image_encoder.blocks.1.attn.proj.weight"].T),
        (enc.blocks[1].attn.rel_pos_h, sd["image_encoder.blocks.1.attn.rel_pos_h"]),
        (enc.blocks[0].attn.rel_pos_w, sd["image_encoder.blocks.0.attn.rel_pos_w"]),
        (enc.blocks[0].norm1.gamma, sd["image_encoder.blocks.0.norm1.weight"]),
        (enc.neck_conv2.kernel, conv_t2k(sd["image_encoder.neck.2.weight"])),
        (enc.neck_norm2.beta, sd["image_encoder.neck.3.bias"]),
        (pe.point_embeddings[2], sd["prompt_encoder.point_embeddings.2.weight"]),
        (pe.mask_conv2.kernel, conv_t2k(sd["prompt_encoder.mask_downscaling.3.weight"])),
        (
            pe.pe_layer.positional_encoding_gaussian_matrix,
            sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"],
        ),
        (md.mask_tokens, sd["mask_decoder.mask_tokens.weight"]),
        (md.upscale_conv1.kernel, convtr_t2k(sd["mask_decoder.output_upscaling.0.weight"])),
        (
            md.transformer.blocks[1].cross_attn_image_to_token.v_proj.kernel,
            sd["mask_decoder.transformer.layers.1.cross_attn_image_to_token.v_proj.weight"].T,
        ),
        (
            md.iou_prediction_head.mlp_layers[0].kernel,
            sd["mask_decoder.iou_prediction_head.layers.0.weight"].T,
        ),
    ]
    for variable, expected in pairs:
        np.testing.assert_array_equal(variable.numpy(), expected, err_msg=variable.path)
    # Every variable was assigned: none keeps its initial value, and the checkpoint's
    # parameter count is exactly the model's.
    fresh = create_model("sam_vit_b", **SMALL)
    for loaded, init in zip(model.weights, fresh.weights, strict=True):
        assert not np.allclose(loaded.numpy(), init.numpy()), loaded.path
    assert sum(v.size for v in sd.values()) == sum(int(np.prod(v.shape)) for v in model.weights)
    assert model.cfg == model_config("sam_vit_b", **SMALL)


def test_second_load_uses_converted_copy(ckpt, cache, count_reads):
    path, _ = ckpt
    first = create_model("sam_vit_b", pretrained=path, **SMALL)
    assert count_reads == [path]
    copies = list((cache / "converted").glob("*.npz"))
    assert len(copies) == 1
    second = create_model("sam_vit_b", pretrained=path, **SMALL)
    assert count_reads == [path], "the .pth was parsed again"
    for a, b in zip(weights_of(first), weights_of(second), strict=True):
        np.testing.assert_array_equal(a, b)


def _flip(data: bytearray, index: int) -> None:
    data[index] ^= 0xFF


def _damage(kind: str, data: bytes) -> bytes:
    b = bytearray(data)
    if kind == "truncated":
        return bytes(b[: len(b) // 2])
    if kind == "empty":
        return b""
    if kind == "garbage":
        return b"this is not a zip file" * 100
    if kind == "array_data":  # a byte in the middle of an array (caught by the zip CRC)
        start = b.index(b"PK\x03\x04", len(b) // 2)
        _flip(b, start - 7)
        return bytes(b)
    if kind == "npy_header":  # the closing brace of the .npy header of a large array (one
        # the zip reader does not read to its end, and so CRC-check, before numpy parses it)
        member = b.index(b"image_encoder.blocks.0.mlp.lin1.weight.npy")
        _flip(b, b.index(b"}", b.index(b"'shape'", member)))
        return bytes(b)
    if kind == "zip_version":  # "version needed to extract" of a central directory entry
        _flip(b, b.index(b"PK\x01\x02") + 6)
        return bytes(b)
    if kind == "compression":  # "compression method" of a central directory entry
        _flip(b, b.index(b"PK\x01\x02") + 10)
        return bytes(b)
    if kind == "hidden_entry":  # a central directory entry's comment length swallows the next
        _flip(b, b.rindex(b"PK\x01\x02", 0, b.rindex(b"PK\x01\x02")) + 32)
        return bytes(b)
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "empty",
        "garbage",
        "array_data",
        "npy_header",
        "zip_version",
        "compression",
        "hidden_entry",
    ],
)
def test_damaged_converted_copy_falls_back_to_pth(ckpt, cache, count_reads, kind):
    path, _ = ckpt
    reference = weights_of(create_model("sam_vit_b", pretrained=path, **SMALL))
    (copy,) = (cache / "converted").glob("*.npz")
    copy.write_bytes(_damage(kind, copy.read_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("sam_vit_b", pretrained=path, **SMALL)
    assert count_reads == [path, path]
    for a, b in zip(weights_of(model), reference, strict=True):
        np.testing.assert_array_equal(a, b)
    # The copy was rewritten and is used again.
    create_model("sam_vit_b", pretrained=path, **SMALL)
    assert count_reads == [path, path]


def test_changed_pth_is_not_served_from_stale_copy(ckpt, tmp_path, count_reads):
    path, _ = ckpt
    mine = tmp_path / "mine.pth"
    mine.write_bytes(path.read_bytes())
    create_model("sam_vit_b", pretrained=mine, **SMALL)
    mine.write_bytes(path.read_bytes()[: mine.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(mine))):
        create_model("sam_vit_b", pretrained=mine, **SMALL)


def test_converted_npz_can_be_passed_directly(ckpt, cache):
    path, _ = ckpt
    reference = weights_of(create_model("sam_vit_b", pretrained=path, **SMALL))
    (copy,) = (cache / "converted").glob("*.npz")
    model = create_model("sam_vit_b", pretrained=copy, **SMALL)
    for a, b in zip(weights_of(model), reference, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------- hostile / broken files


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "inside_state_dict"])
def test_hostile_pickle_is_refused(tmp_path, count_reads, wrapped):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    payload = _Payload(marker)
    obj = {"image_encoder.pos_embed": torch.zeros(1), "x": payload} if wrapped else payload
    torch.save(obj, path)
    # The file really runs its payload when unpickled by an unsafe loader.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError) as info:
        create_model("sam_vit_b", pretrained=path, **SMALL)
    assert str(path) in str(info.value)
    assert "system" in str(info.value)  # the refused global is named
    assert not marker.exists()
    assert count_reads == [path]


def _not_a_torch_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hello")


@pytest.mark.parametrize(
    "kind", ["truncated", "text", "npy", "zip", "missing", "directory", "bad_npz"]
)
def test_broken_files_raise_checkpoint_error(ckpt, tmp_path, kind):
    good, _ = ckpt
    path = tmp_path / ("broken.npz" if kind == "bad_npz" else "broken.pth")
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("not a checkpoint\n" * 50)
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros((4, 4)))
    elif kind == "zip":
        _not_a_torch_zip(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "bad_npz":
        path.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as info:
        create_model("sam_vit_b", pretrained=path, **SMALL)
    assert str(path) in str(info.value)


def test_missing_path_as_string(tmp_path):
    path = str(tmp_path / "nowhere" / "sam.pth")
    with pytest.raises(CheckpointError, match="nowhere"):
        create_model("sam_vit_b", pretrained=path, **SMALL)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (dict(encoder_nb_blocks=3), ["unexpected keys", "image_encoder.blocks.2."]),
        (dict(encoder_embed_dim=48), ["shape", "image_encoder.patch_embed.proj.weight"]),
        (dict(decoder_nb_blocks=1), ["missing keys", "mask_decoder.transformer.layers.1."]),
    ],
    ids=["deeper", "wider", "shallower_decoder"],
)
def test_checkpoint_of_other_config(tmp_path, change, expected):
    other = build_reference(model_config("sam_vit_b", **{**SMALL, **change}), seed=2)
    path = tmp_path / "other.pth"
    save_like_official(other, path)
    with pytest.raises(CheckpointError) as info:
        create_model("sam_vit_b", pretrained=path, **SMALL)
    message = str(info.value)
    assert str(path) in message
    for text in expected:
        assert text in message


@pytest.mark.parametrize("edit", ["remove", "extra", "shape"])
def test_state_dict_edits_are_named(ckpt, tmp_path, edit):
    _, sd = ckpt
    state = dict(sd)
    if edit == "remove":
        key = "mask_decoder.transformer.layers.0.norm2.bias"
        del state[key]
        words = ["missing", key]
    elif edit == "extra":
        key = "image_encoder.blocks.0.attn.surprise"
        state[key] = np.zeros(3, np.float32)
        words = ["unexpected", key]
    else:
        key = "mask_decoder.iou_token.weight"
        state[key] = np.zeros((2, SMALL["embed_dim"]), np.float32)
        words = ["shape", key, "(2, 32)"]
    path = save_state(state, tmp_path / f"{edit}.pth")
    with pytest.raises(CheckpointError) as info:
        create_model("sam_vit_b", pretrained=path, **SMALL)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    # Only the edited key is reported.
    others = [k for k in sd if k != key and k in message]
    assert others == []


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_non_finite_weights_are_refused_before_anything_is_assigned(ckpt, tmp_path, dtype):
    import ml_dtypes

    _, sd = ckpt
    state = dict(sd)
    bad = ["image_encoder.blocks.0.attn.qkv.weight", "mask_decoder.iou_token.weight"]
    for key, value in zip(bad, [np.nan, -np.inf], strict=True):
        state[key] = state[key].copy()
        state[key].flat[3] = value
    path = save_state(state, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError) as info:
        create_model("sam_vit_b", pretrained=path, **SMALL)
    message = str(info.value)
    assert str(path) in message and "checkpoint is damaged" in message
    assert "tensors with NaN or infinite values (2)" in message
    assert all(key in message for key in bad)
    assert [k for k in sd if k not in bad and k in message] == []
    # directly: the model keeps every weight it had (nothing assigned), any float dtype
    model = create_model("sam_vit_b", **SMALL)
    before = weights_of(model)
    cast = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}[dtype]
    with pytest.raises(CheckpointError, match=r"mine\.pth: .*qkv\.weight"):
        loading.load_state_dict(model, {k: v.astype(cast) for k, v in state.items()}, "mine.pth")
    for a, b in zip(before, weights_of(model), strict=True):
        np.testing.assert_array_equal(a, b)
    # the same checkpoint without the non-finite values loads
    loading.load_state_dict(model, {k: v.astype(cast) for k, v in sd.items()})


# ---------------------------------------------------------------------------- in_channels


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
def test_adapt_input_conv_formula(n):
    rng = np.random.default_rng(n)
    w = rng.normal(size=(8, 3, 4, 4)).astype(np.float32)
    got = adapt_input_conv(w, n)
    assert got.shape == (8, n, 4, 4) and got.dtype == w.dtype
    if n == 1:
        expected = w.sum(axis=1, keepdims=True)
    else:
        expected = np.stack([w[:, c % 3] for c in range(n)], axis=1) * (3 / n)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    if n == 3:
        np.testing.assert_array_equal(got, w)


def _response(kernel, patch):
    """Conv response of one (kh, kw) patch repeated in every input channel."""
    return np.einsum("oikl,kl->o", kernel.astype(np.float64), patch)


@pytest.mark.parametrize("n", [1, 3, 6])  # exact for 1 and multiples of 3, as documented
def test_adapt_input_conv_keeps_gray_response(n):
    rng = np.random.default_rng(10 + n)
    w = rng.normal(size=(8, 3, 4, 4)).astype(np.float32)
    patch = rng.uniform(0, 1, (4, 4))
    np.testing.assert_allclose(
        _response(adapt_input_conv(w, n), patch), _response(w, patch), rtol=1e-5, atol=1e-5
    )


def test_adapt_mean_std():
    assert adapt_mean_std(RGB_MEAN, 3) == RGB_MEAN
    assert adapt_mean_std(RGB_MEAN, 1) == pytest.approx((sum(RGB_MEAN) / 3,))
    assert adapt_mean_std(RGB_STD, 5) == pytest.approx(RGB_STD + RGB_STD[:2])
    assert adapt_mean_std(RGB_STD, 7) == pytest.approx(RGB_STD * 2 + RGB_STD[:1])


@pytest.mark.parametrize("n", [1, 5])
def test_pretrained_with_other_in_channels(ckpt, n):
    path, sd = ckpt
    model = create_model("sam_vit_b", pretrained=path, in_channels=n, **SMALL)
    cfg = model.cfg
    assert cfg.in_channels == n
    assert cfg.mean == pytest.approx(adapt_mean_std(RGB_MEAN, n)) and len(cfg.mean) == n
    assert cfg.std == pytest.approx(adapt_mean_std(RGB_STD, n)) and len(cfg.std) == n
    w = sd["image_encoder.patch_embed.proj.weight"]
    if n == 1:
        expected = w.sum(axis=1, keepdims=True)
    else:
        expected = np.concatenate([w, w[:, :2]], axis=1) * (3 / 5)
    np.testing.assert_allclose(
        model.image_encoder.patch_embed.proj.kernel.numpy(), conv_t2k(expected), rtol=1e-6
    )
    # Everything else is loaded unchanged.
    np.testing.assert_array_equal(
        model.mask_decoder.mask_tokens.numpy(), sd["mask_decoder.mask_tokens.weight"]
    )
    pred = SAMPredictor(model)
    image = np.random.default_rng(n).integers(0, 256, (40, 30, n), dtype=np.uint8)
    pred.set_image(image)
    masks, scores, logits = pred(points=np.array([[10.0, 12.0]]), labels=np.array([1]))
    assert masks.shape == (3, 40, 30) and scores.shape == (3,)
    assert np.all(np.isfinite(logits))
    with pytest.raises(ValueError, match="image"):
        pred.set_image(np.zeros((40, 30, 3), np.uint8))


def test_explicit_mean_std_win():
    mean, std = (0.1, 0.2, 0.3, 0.4, 0.5), (0.5, 0.4, 0.3, 0.2, 0.1)
    model = create_model("sam_vit_b", in_channels=5, mean=mean, std=std, **SMALL)
    assert model.cfg.mean == mean and model.cfg.std == std
    cfg = model_config("sam_vit_b", in_channels=1, mean=(0.25,))
    assert cfg.mean == (0.25,) and cfg.std == pytest.approx((sum(RGB_STD) / 3,))
    with pytest.raises(ValueError, match="mean"):
        model_config("sam_vit_b", in_channels=5, mean=(0.5, 0.5, 0.5))


# ----------------------------------------------------------------------------- input_size


@pytest.mark.parametrize("size", [(96, 48), (32, 32)], ids=["up_nonsquare", "down"])
def test_input_size_override_resizes_position_tables(ckpt, size):
    path, sd = ckpt
    model = create_model("sam_vit_b", pretrained=path, **{**SMALL, "input_size": size})
    gh, gw = size[0] // 16, size[1] // 16
    enc = model.image_encoder
    pos = sd["image_encoder.pos_embed"]  # (1, 4, 4, C), channels last
    want = _torch_bicubic(pos.astype(np.float64), (gh, gw))
    assert tuple(enc.pos_embed.shape) == (1, gh, gw, SMALL["encoder_embed_dim"])
    np.testing.assert_allclose(enc.pos_embed.numpy(), want, atol=1e-6)
    for i in range(SMALL["encoder_nb_blocks"]):
        for axis, g in (("h", gh), ("w", gw)):
            key = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
            table = getattr(enc.blocks[i].attn, f"rel_pos_{axis}").numpy()
            if i in SMALL["encoder_global_attn_indices"]:
                want = _torch_rel_pos(sd[key].astype(np.float64), 2 * g - 1)
                assert table.shape == (2 * g - 1, sd[key].shape[1])
                np.testing.assert_allclose(table, want, atol=1e-6)
            else:  # window blocks: the table depends on the window size only
                np.testing.assert_array_equal(table, sd[key])
    pred = SAMPredictor(model)
    pred.set_image(np.zeros((20, 30, 3), np.uint8))
    assert pred(points=np.array([[5.0, 5.0]]), labels=np.array([1]))[0].shape == (3, 20, 30)


def _torch_bicubic(pos: np.ndarray, size) -> np.ndarray:
    """torch's bicubic resize of a channels-last (1, H, W, C) positional embedding."""
    t = torch.from_numpy(pos).permute(0, 3, 1, 2)
    out = F.interpolate(t, size=tuple(size), mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).numpy()


def _torch_rel_pos(table: np.ndarray, length: int) -> np.ndarray:
    """Meta's ``get_rel_pos`` resizing of a (L, C) table."""
    t = torch.from_numpy(table)
    out = F.interpolate(t.reshape(1, t.shape[0], -1).permute(0, 2, 1), size=length, mode="linear")
    return out.reshape(-1, length).permute(1, 0).numpy()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((7, 5), (11, 4)),
        ((8, 8), (3, 13)),
        ((14, 14), (28, 28)),
        ((16, 6), (5, 6)),
        ((2, 3), (9, 1)),
    ],
)
def test_resize_pos_embed_matches_torch(src, dst, dtype):
    rng = np.random.default_rng(sum(src) + sum(dst))
    pos = rng.normal(size=(1, *src, 6)).astype(dtype)
    got = resize_pos_embed(pos, dst)
    assert got.shape == (1, *dst, 6) and got.dtype == dtype
    # torch computes the source positions in the tensor's dtype, so its float32 result is
    # itself off by up to ~2e-5; compare with torch in float64 (and float32 loosely).
    np.testing.assert_allclose(got, _torch_bicubic(pos.astype(np.float64), dst), atol=1e-6)
    np.testing.assert_allclose(got, _torch_bicubic(pos, dst), atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("src", "dst"), [(27, 13), (27, 127), (5, 7), (127, 27), (9, 1)])
def test_resize_rel_pos_matches_torch(src, dst, dtype):
    table = np.random.default_rng(src * dst).normal(size=(src, 8)).astype(dtype)
    got = resize_rel_pos(table, dst)
    assert got.shape == (dst, 8) and got.dtype == dtype
    # See test_resize_pos_embed_matches_torch for the float64 reference.
    np.testing.assert_allclose(got, _torch_rel_pos(table.astype(np.float64), dst), atol=1e-6)
    np.testing.assert_allclose(got, _torch_rel_pos(table, dst), atol=1e-4)


# ---------------------------------------------------------------------- offline / registry


def _no_network(*args, **kwargs):
    raise requests.exceptions.ConnectionError("network is unreachable (test)")


def test_offline_without_cached_weights(cache, monkeypatch):
    monkeypatch.setattr(pooch, "retrieve", _no_network)
    with pytest.raises(WeightsUnavailableError) as info:
        create_model("sam_vit_b", pretrained=True)
    target = cache.resolve() / OFFICIAL_WEIGHTS["sam_vit_b"].filename
    assert str(target) in str(info.value)
    assert not target.exists()


def test_cached_file_with_wrong_hash_is_not_used(cache, monkeypatch):
    monkeypatch.setattr(pooch, "retrieve", _no_network)
    cache.mkdir(parents=True, exist_ok=True)
    fake = cache / OFFICIAL_WEIGHTS["sam_vit_b"].filename
    fake.write_bytes(b"not the official checkpoint")
    # download.py: a cached file with the wrong hash is not used, a warning is issued and it
    # is downloaded again; if that fails the bad file is left untouched.
    with pytest.warns(UserWarning, match="SHA256"):
        with pytest.raises(WeightsUnavailableError) as info:
            factory.weights_path("sam_vit_b")
    assert "wrong SHA256" in str(info.value) and str(fake.resolve()) in str(info.value)
    assert fake.read_bytes() == b"not the official checkpoint"


def test_cached_file_with_matching_hash_is_used(cache, monkeypatch):
    import hashlib

    monkeypatch.setattr(pooch, "retrieve", _no_network)
    cache.mkdir(parents=True, exist_ok=True)
    content = b"pretend checkpoint"
    fake = cache / "sam_vit_b_01ec64.pth"
    fake.write_bytes(content)
    official = OFFICIAL_WEIGHTS["sam_vit_b"]
    matching = WeightFile(official.filename, official.url, hashlib.sha256(content).hexdigest())
    entry = dataclasses.replace(registry.model_entry("sam_vit_b"), weights=matching)
    monkeypatch.setitem(registry._REGISTRY, "sam_vit_b", entry)
    assert factory.weights_path("sam_vit_b") == fake.resolve()
    # A successful re-download replaces a bad cached file.
    fake.write_bytes(b"tampered")

    def download(url, known_hash, fname, path, progressbar):
        target = pathlib.Path(path) / fname
        target.write_bytes(content)
        return str(target)

    monkeypatch.setattr(pooch, "retrieve", download)
    with pytest.warns(UserWarning, match="SHA256"):
        assert factory.weights_path("sam_vit_b") == fake.resolve()
    assert fake.read_bytes() == content


def test_unknown_model_names():
    names = list_models()
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h"} <= set(names)
    for call in (
        lambda: create_model("nope"),
        lambda: create_model("nope", pretrained=True),
        lambda: model_config("nope"),
    ):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert "nope" in message
        for name in names:
            assert name in message


def test_registry_has_one_frozen_entry_per_model():
    entry = registry.model_entry("sam_tiny_nuclei")
    assert isinstance(entry, registry.ModelEntry) and entry.name == "sam_tiny_nuclei"
    assert entry.config == model_config("sam_tiny_nuclei")
    assert entry.weights == registry.TINY_NUCLEI_WEIGHTS
    assert registry.auto_settings("sam_tiny_nuclei") == entry.auto_settings()
    assert entry.auto_settings() == {"pred_iou_thresh": 0.7, "stability_score_thresh": 0.9}
    assert registry.auto_settings("sam_vit_b") == {
        "pred_iou_thresh": 0.88,
        "stability_score_thresh": 0.95,
    }
    assert registry.model_entry("sam_vit_b").weights == OFFICIAL_WEIGHTS["sam_vit_b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.weights = None
    with pytest.raises(TypeError):
        entry.auto["pred_iou_thresh"] = 0.1  # read-only mapping
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        registry.model_entry("nope")
    assert sorted(registry._REGISTRY) == list_models()


def test_registry_imports_without_tensorflow():
    code = (
        "import sys\n"
        "from napari_sam.weights.registry import list_models, model_entry\n"
        "assert model_entry('sam_vit_b').config.name == 'sam_vit_b', list_models()\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
