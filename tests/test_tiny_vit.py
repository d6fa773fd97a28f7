"""[light-encoder] step 1: MobileSAM's TinyViT image encoder against the third-party reference
(``ultralytics``' TinyViT, which loads ``mobile_sam.pt``), on a random-init MobileSAM with
every tensor perturbed, saved with ``torch.save`` as the real file is and read torch-free."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.model.tiny_vit import TinyViTEncoder
from napari_sam.weights.key_map import UNUSED, tiny_vit_entries
from napari_sam.weights.loading import read_checkpoint

torch = pytest.importorskip("torch")


def _build_mobile_sam():
    """ultralytics' MobileSAM. ultralytics reads torchvision's version when imported, and
    only that: torchvision itself is not installed (its PyPI build needs CUDA torch, and
    Meta's reference then uses a shim, tests/reference.py), so the version is given here."""
    import importlib.metadata

    real = importlib.metadata.version

    def version(name):
        return "0.28.0" if name == "torchvision" else real(name)

    importlib.metadata.version = version
    try:
        from ultralytics.models.sam.build import build_mobile_sam
    except ImportError as err:
        pytest.skip(f"ultralytics, the TinyViT reference, is not installed ({err})")
    finally:
        importlib.metadata.version = real
    return build_mobile_sam()


@pytest.fixture(scope="module")
def mobile_sam(tmp_path_factory):
    torch.manual_seed(0)
    sam = _build_mobile_sam()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in sam.state_dict().items():  # parameters and buffers, every one changed
            if not t.dtype.is_floating_point:
                t.fill_(7)  # num_batches_tracked
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            else:
                scale = 0.1 if t.std() == 0 or t.numel() < 2 else 0.2 * float(t.std())
                t.add_(scale * torch.randn(t.shape, generator=g))
    sam.eval()  # the attention biases' gathered copy is made here, after the change
    path = tmp_path_factory.mktemp("mobile_sam") / "mobile_sam.pt"
    torch.save(sam.state_dict(), path)
    return sam, path


def _encoder(path):
    state = read_checkpoint(path)
    enc = TinyViTEncoder(name="image_encoder")
    entries = tiny_vit_entries(enc)
    used = {e.key for e in entries}
    mine = {k for k in state if k.startswith("image_encoder.")}
    assert not used - mine, sorted(used - mine)[:5]
    assert {k for k in mine - used if not UNUSED.search(k)} == set()
    for e in entries:
        value = e.transform(np.asarray(state[e.key], np.float32))
        assert tuple(value.shape) == tuple(e.variable.shape), e.key
        e.variable.assign(value)
    return enc


def _meta_sam_with(tiny_encoder, state):
    """Meta's ``Sam`` (segment-anything 1.0) around the reference TinyViT, as MobileSAM
    assembles it, with the checkpoint's weights."""
    from reference import import_segment_anything

    m = import_segment_anything().modeling
    sam = m.Sam(
        image_encoder=tiny_encoder,
        prompt_encoder=m.PromptEncoder(embed_dim=256, image_embedding_size=(64, 64),
                                       input_image_size=(1024, 1024), mask_in_chans=16),
        mask_decoder=m.MaskDecoder(num_multimask_outputs=3, transformer=m.TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256,
            iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )  # fmt: skip
    sam.load_state_dict(state)
    return sam.eval()


def test_sam_vit_t_prompts_to_masks_match_the_reference(mobile_sam):
    """[light-encoder] 2: the registered ``sam_vit_t`` on the checkpoint, every prompt kind,
    against Meta's predictor around the reference TinyViT."""
    from napari_sam import SAMPredictor, create_model
    from test_parity import assert_every_prompt_kind

    from ref_models import reference_predictor, relative_error

    sam, path = mobile_sam
    sam.image_encoder.set_imgsz([1024, 1024])
    ref = reference_predictor(_meta_sam_with(sam.image_encoder, torch.load(path)))
    pred = SAMPredictor(create_model("sam_vit_t", pretrained=path))
    img = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ref.set_image(img)
    pred.set_image(img)
    emb = pred.embedding.numpy()[0].transpose(2, 0, 1)
    assert relative_error(emb, ref.features.numpy()[0]) < 1e-3
    assert_every_prompt_kind(pred, ref, (480, 640))
    # first_conv: the stem's first kernel adapted to one channel (patch_embed.seq.0.c)
    grey = create_model("sam_vit_t", pretrained=path, in_channels=1)
    out = np.asarray(grey.image_encoder(np.zeros((1, 512, 512, 1), np.float32)))
    assert out.shape == (1, 32, 32, 256) and np.isfinite(out).all()


@pytest.mark.parametrize("size", [1024, 512])
def test_embedding_matches_the_reference(mobile_sam, size):
    sam, path = mobile_sam
    enc = _encoder(path)
    x = np.random.default_rng(size).normal(0, 1, (1, size, size, 3)).astype(np.float32)
    sam.image_encoder.set_imgsz([size, size])
    with torch.no_grad():
        want = sam.image_encoder(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(enc(x)).transpose(0, 3, 1, 2)
    assert got.shape == want.shape == (1, 256, size // 16, size // 16)
    err = np.abs(got - want).max() / np.abs(want).max()
    print(f"{size}: max relative error {err:.2e}")
    assert err < 1e-3, err


def test_vit_t_lm_files_load_and_the_decoder_matches_torch_em(mobile_sam, tmp_path):
    """[light-encoder] micro-sam's ``vit_t_lm``: its two files as micro-sam saves them (the
    MobileSAM checkpoint, and torch-em's UNETR decoder built on the reference TinyViT), loaded
    by ``create_model("vit_t_lm", ...)``; the decoder's maps equal torch-em's."""
    pytest.importorskip("bioimage_cpp")
    from napari_sam.segment.ais import decoder_maps
    from torch_em_ref import build_reference_unetr, decoder_state, reference_maps

    sam, path = mobile_sam
    sam.image_encoder.set_imgsz([1024, 1024])
    unetr = build_reference_unetr(sam.image_encoder, conv_transpose=False, seed=3)
    torch.save(decoder_state(unetr), tmp_path / "vit_t_decoder.pt")
    from napari_sam import create_model

    model = create_model("vit_t_lm", pretrained=path, decoder=tmp_path / "vit_t_decoder.pt")
    assert model.instance_decoder is not None
    emb = np.random.default_rng(2).normal(size=(1, 64, 64, 256)).astype(np.float32)
    ref = reference_maps(unetr, emb, (1024, 768), (1024, 768))
    ours = decoder_maps(model.instance_decoder, emb, (1024, 1024), (1024, 768), (1024, 768))
    ours = ours.transpose(2, 0, 1)
    assert ours.shape == ref.shape
    assert float(np.abs(ours - ref).max() / np.abs(ref).max()) < 1e-4


def test_a_wrong_file_for_sam_vit_t_is_refused_naming_it(mobile_sam, tmp_path):
    """A checkpoint that is not MobileSAM's (a key missing, a tensor of the wrong shape): one
    error naming the file and what does not fit; nothing half-loaded."""
    from napari_sam.weights import CheckpointError, create_model

    _, path = mobile_sam
    state = torch.load(path)
    del state["image_encoder.layers.1.blocks.0.attn.attention_biases"]
    state["image_encoder.neck.0.weight"] = torch.zeros(256, 160, 1, 1)
    bad = tmp_path / "not_mobile_sam.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="not_mobile_sam.pt") as info:
        create_model("sam_vit_t", pretrained=bad)
    assert "attention_biases" in str(info.value) and "neck.0.weight" in str(info.value)


def test_bfloat16_tiny_vit_is_close_to_float32(mobile_sam):
    """The XLA-fused attention, MLP and 1 x 1 convolutions also run in bfloat16 (the apps'
    ``dtype="auto"`` on CPUs with native bfloat16), close to float32."""
    from napari_sam import SAMPredictor, create_model
    from napari_sam.model.precision import bfloat16_runs

    if not bfloat16_runs():
        pytest.skip("this machine has no bfloat16 convolution kernel (see bfloat16_runs)")
    _, path = mobile_sam
    image = np.random.default_rng(2).integers(0, 256, (256, 256, 3)).astype(np.uint8)
    got = {}
    for dtype in ("float32", "bfloat16"):
        pred = SAMPredictor(create_model("sam_vit_t", pretrained=path, dtype=dtype))
        pred.set_image(image)
        got[dtype] = pred.embedding.numpy()
    assert got["bfloat16"].dtype == np.float32
    rel = np.abs(got["bfloat16"] - got["float32"]).max() / np.abs(got["float32"]).max()
    assert 0 < rel < 0.05, rel  # bfloat16 really ran (not identical), and is close
