"""micro-sam's released files, built here: every registered micro-sam model from local files
with the real key layout and shapes, and the files that must be refused, named in the error.

The encoder files are Meta's reference ``Sam`` (segment-anything 1.0) at each model's full
size, every tensor perturbed, saved with ``torch.save`` as micro-sam's ``vit_b.pt`` /
``vit_l.pt`` (a plain state dict of Meta's keys); the decoder files are torch-em's UNETR as
micro-sam builds it (``torch_em_ref.py``), saved as ``vit_b_decoder.pt``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from napari_sam.segment.ais import decoder_maps
from napari_sam.weights import CheckpointError, create_model, model_config
from napari_sam.weights.micro_sam import MICRO_SAM_MODELS
from torch_em_ref import build_reference_unetr, decoder_state, reference_maps

from ref_models import build_reference
from small_configs import TINY

# shrunk micro-sam models (TINY's encoder) with Meta's 256-channel embedding
CFG = dict(TINY, input_size=(128, 128), encoder_patch_size=16, embed_dim=256)


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _fingerprint(arrays):
    """Sorted (size, sum of |x|) of each tensor: the same for a checkpoint and a model that
    holds every one of its tensors, whatever the transposes."""
    return sorted((int(a.size), round(float(np.abs(a).astype(np.float64).sum()), 2))
                  for a in arrays)  # fmt: skip


def _save_pair(sam, folder, size, seed):
    unetr = build_reference_unetr(sam.image_encoder, False, seed=seed)
    weights, decoder = folder / f"{size}.pt", folder / f"{size}_decoder.pt"
    torch.save(sam.state_dict(), weights)
    torch.save(decoder_state(unetr), decoder)
    return weights, decoder, unetr


def _check_loaded(model, sam, unetr, original=None):
    """Every SAM tensor is in the model, and (at ``original`` size) the decoder's maps are
    torch-em's."""
    state = [v.numpy() for v in sam.state_dict().values()]
    assert _fingerprint([w.numpy() for w in model.weights]) == _fingerprint(state)
    if original is None:
        return
    h, w = original
    scale = 1024 / max(h, w)
    rescaled = (int(h * scale + 0.5), int(w * scale + 0.5))
    emb = np.random.default_rng(0).normal(size=(1, 64, 64, 256)).astype(np.float32)
    ref = reference_maps(unetr, emb, rescaled, original)
    ours = decoder_maps(model.instance_decoder, emb, (1024, 1024), rescaled, original)
    assert _relative(ours.transpose(2, 0, 1), ref) < 1e-4


def test_micro_sam_models_are_meta_architectures():
    """Each registered micro-sam model is exactly its base architecture (so one full-size file
    per architecture below, and tests/test_tiny_vit.py for sam_vit_t, covers the key layout
    and shapes of every model)."""
    assert set(MICRO_SAM_MODELS) == {"vit_b_lm", "vit_l_lm", "vit_b_em_organelles",
                                     "vit_l_em_organelles", "vit_t_lm",
                                     "vit_t_em_organelles"}  # fmt: skip
    for key, m in MICRO_SAM_MODELS.items():
        meta = model_config(m.sam)
        assert model_config(key).replace(name=meta.name, url=meta.url) == meta, key


@pytest.fixture(scope="module")
def vit_b_files(tmp_path_factory):
    sam = build_reference(model_config("vit_b_lm"), seed=21)
    return (sam, *_save_pair(sam, tmp_path_factory.mktemp("vit_b_lm"), "vit_b", seed=22))


@pytest.mark.parametrize("key", ["vit_b_lm", "vit_b_em_organelles"])
def test_full_size_vit_b_models_from_micro_sam_files(vit_b_files, key):
    sam, weights, decoder, unetr = vit_b_files
    model = create_model(key, pretrained=weights, decoder=decoder)
    assert model.cfg.encoder_embed_dim == 768 and model.decoder_source == str(decoder)
    _check_loaded(model, sam, unetr, (480, 640) if key == "vit_b_lm" else None)


def test_vit_b_file_for_vit_l_lm_is_named(vit_b_files):
    """A vit_b.pt given for vit_l_lm: the error names the file and nothing is loaded."""
    _, weights, _, _ = vit_b_files
    with pytest.raises(CheckpointError, match=str(weights)):
        create_model("vit_l_lm", pretrained=weights, decoder=False)


@pytest.mark.slow
def test_full_size_vit_l_models_from_micro_sam_files(tmp_path):
    """vit_l_lm and vit_l_em_organelles (a 1.2 GB file): about 45 s and 4 GB."""
    sam = build_reference(model_config("vit_l_lm"), seed=31)
    weights, decoder, unetr = _save_pair(sam, tmp_path, "vit_l", seed=32)
    for key in ("vit_l_lm", "vit_l_em_organelles"):
        model = create_model(key, pretrained=weights, decoder=decoder)
        assert model.cfg.encoder_embed_dim == 1024 and model.cfg.encoder_nb_blocks == 24
        _check_loaded(model, sam, unetr, (1024, 700) if key == "vit_l_lm" else None)
        del model


# ------------------------------------------------------------- files that must be refused


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    sam = build_reference(model_config("vit_b_lm", **CFG), seed=5)
    return _save_pair(sam, tmp_path_factory.mktemp("small"), "vit_b", seed=6)[:2]


def _truncate(path, out):
    data = path.read_bytes()
    out.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("which", ["encoder", "decoder"])
@pytest.mark.parametrize("damage", ["truncated", "hostile", "hostile_inside", "empty"])
def test_bad_micro_sam_file_is_named_and_nothing_runs(small_files, tmp_path, which, damage):
    weights, decoder = small_files
    bad = tmp_path / (weights.name if which == "encoder" else decoder.name)
    marker = tmp_path / "MARKER"
    if damage == "truncated":
        _truncate(weights if which == "encoder" else decoder, bad)
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        good = torch.load(weights if which == "encoder" else decoder, weights_only=True)
        payload = _Payload(marker)
        torch.save({**good, "extra": payload} if damage == "hostile_inside" else payload, bad)
    files = {"pretrained": bad, "decoder": decoder} if which == "encoder" else {
        "pretrained": weights, "decoder": bad}  # fmt: skip
    with pytest.raises(CheckpointError) as info:
        create_model("vit_b_lm", **files, **CFG)
    assert str(bad) in str(info.value)
    assert not marker.exists()


def test_decoder_of_another_width_is_named(small_files, tmp_path):
    """A decoder trained on 32-channel embeddings for a model whose embedding has 256."""
    weights, _ = small_files
    narrow = build_reference(model_config("vit_b_lm", **{**CFG, "embed_dim": 32}), seed=8)
    _, narrow_decoder, _ = _save_pair(narrow, tmp_path, "narrow", seed=9)
    with pytest.raises(CheckpointError, match=f"{narrow_decoder}: the decoder is for image "
                                              "embeddings of 32"):  # fmt: skip
        create_model("vit_b_lm", pretrained=weights, decoder=narrow_decoder, **CFG)


def test_encoder_of_another_size_is_named(small_files):
    weights, decoder = small_files
    with pytest.raises(CheckpointError, match=str(weights)):
        create_model("vit_b_lm", pretrained=weights, decoder=decoder,
                     **{**CFG, "encoder_embed_dim": 64})  # fmt: skip


def test_encoder_file_given_as_decoder_is_named(small_files):
    weights, _ = small_files
    with pytest.raises(CheckpointError, match=str(weights)):
        create_model("vit_b_lm", pretrained=weights, decoder=weights, **CFG)
