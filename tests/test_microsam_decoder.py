"""micro-sam's instance decoder against torch-em's UNETR, and the AIS watershed against torch-em's.

The reference is torch-em 0.10.9 (test-only; see torch_em_ref.py), built as micro-sam's
``get_unetr`` builds it, every decoder tensor perturbed, saved with ``torch.save`` in micro-sam's
file forms and read back through napari-sam's torch-free reader.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_sam.segment.ais import AisSettings, decoder_maps, instances_from_maps
from napari_sam.train.evaluation import instance_f1
from napari_sam.train.synthetic import make_nuclei_2d
from napari_sam.weights import CheckpointError, create_model, model_config
from napari_sam.weights.decoder import decoder_config, load_decoder
from torch_em_ref import build_reference_unetr, decoder_state, import_torch_em, reference_maps

from ref_models import build_reference
from small_configs import TINY

pytest.importorskip("bioimage_cpp")

# the micro-sam models, shrunk (TINY's encoder), with Meta's 256-channel embedding
CFG = dict(TINY, input_size=(128, 128), encoder_patch_size=16, embed_dim=256)


@pytest.fixture(scope="module")
def reference_sam():
    return build_reference(model_config("vit_b_lm", **CFG), seed=5)


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("conv_transpose", [False, True], ids=["bilinear", "transposed"])
def test_decoder_maps_match_torch_em(reference_sam, conv_transpose):
    unetr = build_reference_unetr(reference_sam.image_encoder, conv_transpose, seed=7)
    state = {k: v.numpy() for k, v in decoder_state(unetr).items()}
    config = decoder_config(state, embed_dim=256)
    assert config.features == (512, 256, 128, 64)
    assert len(config.conv_transpose) == (8 if conv_transpose else 0)
    decoder = load_decoder(state, "decoder.pt", embed_dim=256)
    emb = np.random.default_rng(1).normal(size=(1, 8, 8, 256)).astype(np.float32)
    for rescaled, original in (((128, 128), (128, 128)), ((128, 96), (150, 113))):
        ref = reference_maps(unetr, emb, rescaled, original)
        ours = decoder_maps(decoder, emb, (128, 128), rescaled, original).transpose(2, 0, 1)
        assert ours.shape == ref.shape
        assert _relative(ours, ref) < 1e-4


def test_mixed_upsamplers_are_detected_per_module(reference_sam):
    bilinear = decoder_state(build_reference_unetr(reference_sam.image_encoder, False, seed=1))
    transposed = decoder_state(build_reference_unetr(reference_sam.image_encoder, True, seed=1))
    state = {k: v.numpy() for k, v in bilinear.items() if not k.startswith("deconv_out.")}
    state.update({k: v.numpy() for k, v in transposed.items() if k.startswith("deconv_out.")})
    assert decoder_config(state).conv_transpose == ("deconv_out",)
    load_decoder(state)  # every key used, every variable filled


def test_decoder_of_another_width_is_refused(reference_sam):
    state = {k: v.numpy() for k, v in decoder_state(
        build_reference_unetr(reference_sam.image_encoder, False)).items()}  # fmt: skip
    with pytest.raises(CheckpointError, match="dec.pt: the decoder is for image embeddings of 256"):
        load_decoder(state, "dec.pt", embed_dim=32)
    cut = dict(state)
    cut["decoder.blocks.1.block.4.weight"] = cut["decoder.blocks.1.block.4.weight"][:, :5]
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_decoder(cut, "dec.pt")
    del cut["out_conv.weight"]
    with pytest.raises(CheckpointError, match="not a micro-sam instance decoder"):
        load_decoder(cut, "dec.pt")


def _maps_from_labels(labels, rng):
    """Decoder-like maps of a label image: blurred foreground, normalised distances, noise."""
    fg = ndi.gaussian_filter((labels > 0).astype(np.float32), 1.5)
    boundary = np.zeros(labels.shape, np.float32)
    center = np.ones(labels.shape, np.float32)
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None:
            continue
        m = labels[sl] == i
        e = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        boundary[sl][m] = 1 - e[m] / e.max()
        yy, xx = np.nonzero(m)
        d = np.hypot(yy - yy.mean(), xx - xx.mean())
        center[sl][m] = d / max(d.max(), 1)
    return [np.clip(a + rng.normal(0, 0.05, labels.shape), 0, 1).astype(np.float32)
            for a in (fg, center, boundary)]  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_watershed_matches_torch_em(seed):
    import bioimage_cpp as bic

    _, segmentation = import_torch_em()
    _, labels = make_nuclei_2d((384, 384), seed=seed, touching_fraction=0.6)
    fg, center, boundary = _maps_from_labels(labels, np.random.default_rng(seed))
    for s in (AisSettings(), AisSettings(center_distance_threshold=0.4, distance_smoothing=2.0,
                                         min_size=100)):  # fmt: skip
        ref = segmentation.watershed_from_center_and_boundary_distances(
            center,
            boundary,
            bic.filters.gaussian_smoothing(fg, s.foreground_smoothing),
            s.center_distance_threshold,
            s.boundary_distance_threshold,
            s.foreground_threshold,
            s.distance_smoothing,
            s.min_size,
        )
        ours = instances_from_maps(fg, center, boundary, s)
        assert ours.dtype == np.uint32 and ours.max() > 20
        assert instance_f1(ours, ref).f1 >= 0.99
        assert np.mean((ours > 0) == (ref > 0)) > 0.995


def test_settings_are_checked():
    with pytest.raises(ValueError, match="center_distance_threshold: expected a value in"):
        AisSettings(center_distance_threshold=2).check()
    with pytest.raises(ValueError, match="unknown min_area"):
        AisSettings().with_options({"min_area": 3})
    with pytest.raises(ValueError, match="min_size"):
        instances_from_maps(*np.zeros((3, 8, 8)), AisSettings(min_size=-1))


@pytest.mark.parametrize("form", ["separate", "export", "training"])
def test_model_and_decoder_from_micro_sam_files(reference_sam, tmp_path, form):
    unetr = build_reference_unetr(reference_sam.image_encoder, form == "training", seed=2)
    sam_state = reference_sam.state_dict()
    dec_state = decoder_state(unetr)
    weights, decoder = tmp_path / "vit_b.pt", None
    if form == "separate":  # vit_b.pt and vit_b_decoder.pt, as on bioimage.io
        torch.save(sam_state, weights)
        decoder = tmp_path / "vit_b_decoder.pt"
        torch.save(dec_state, decoder)
    elif form == "export":
        torch.save({"model_state": sam_state, "decoder_state": dec_state}, weights)
    else:  # a torch-em training checkpoint: sam.-prefixed keys, optimizer, pickled init objects
        opt = torch.optim.Adam(unetr.decoder.parameters())
        torch.save({"model_state": {f"sam.{k}": v for k, v in sam_state.items()},
                    "decoder_state": dec_state, "optimizer_state": opt.state_dict(),
                    "iteration": 10, "init": {"model_class": torch.nn.Conv2d,
                                              "model": torch.nn.Conv2d(1, 1, 1)}},
                   weights)  # fmt: skip
    model = create_model("vit_b_lm", pretrained=weights, decoder=decoder, **CFG)
    assert model.instance_decoder is not None
    emb = np.random.default_rng(3).normal(size=(1, 8, 8, 256)).astype(np.float32)
    ref = reference_maps(unetr, emb, (128, 128), (128, 128))
    ours = decoder_maps(model.instance_decoder, emb, (128, 128), (128, 128), (128, 128))
    assert _relative(ours.transpose(2, 0, 1), ref) < 1e-4


@pytest.fixture(scope="module")
def micro_sam_files(reference_sam, tmp_path_factory):
    """vit_b.pt and vit_b_decoder.pt of a shrunk vit_b_lm, saved as micro-sam saves them."""
    folder = tmp_path_factory.mktemp("micro_sam")
    unetr = build_reference_unetr(reference_sam.image_encoder, False, seed=4)
    torch.save(reference_sam.state_dict(), folder / "vit_b.pt")
    torch.save(decoder_state(unetr), folder / "vit_b_decoder.pt")
    return folder / "vit_b.pt", folder / "vit_b_decoder.pt", unetr


def _stack_predictor(model, image):
    from napari_sam.stacks.stack_predictor import StackPredictor

    return StackPredictor(model, image, axes="YX")


def test_ais_on_a_slice_and_on_tiles_matches_the_maps(micro_sam_files):
    from napari_sam.predict.resizer import ImageResizer
    from napari_sam.segment.ais import InstanceSegmenter
    from napari_sam.segment.driver import segment_stack
    from napari_sam.stacks.tiled_predictor import TiledPredictor
    from napari_sam.stacks.tiling import Tiling

    weights, decoder, unetr = micro_sam_files
    model = create_model("vit_b_lm", pretrained=weights, decoder=decoder, **CFG)
    image, _ = make_nuclei_2d((200, 160), seed=3)
    sp = _stack_predictor(model, image)
    seg = InstanceSegmenter(model.instance_decoder)
    maps = seg.maps(sp, ())
    rescaled = ImageResizer((200, 160), (128, 128)).rescaled_size
    ref = reference_maps(unetr, sp.get_embedding(())[None], rescaled, (200, 160))
    assert _relative(maps.transpose(2, 0, 1), ref) < 1e-4
    labels = segment_stack(sp, seg)
    np.testing.assert_array_equal(labels, instances_from_maps(*maps.transpose(2, 0, 1)))
    # tiles: each inner region's maps come from its own window, one watershed on the slice
    tiled = TiledPredictor(model, image, Tiling((200, 160), 128, 16), axes="YX")
    tmaps = seg.maps(tiled, ())
    for t in range(len(tiled.tiling)):
        wy0, _, wx0, _ = tiled.tiling.window(t)
        y0, y1, x0, x1 = tiled.tiling.inner(t)
        ref = reference_maps(unetr, tiled.tile_embedding((), t)[None], (128, 128), (128, 128))
        ref = ref[:, y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
        assert _relative(tmaps[y0:y1, x0:x1].transpose(2, 0, 1), ref) < 1e-4
    assert segment_stack(tiled, seg).shape == (200, 160)


def test_cli_auto_method_ais_and_amg(micro_sam_files, tmp_path):
    import tifffile

    from napari_sam.cli import main

    weights, decoder, _ = micro_sam_files
    image, _ = make_nuclei_2d((96, 96), seed=1)
    tifffile.imwrite(tmp_path / "img.tif", image)
    overrides = [a for k, v in CFG.items() for a in ("--override", f"{k}={_json(v)}")]
    common = [str(tmp_path / "img.tif"), "--model", "vit_b_lm", "--weights", str(weights),
              *overrides]  # fmt: skip
    assert main(["auto", *common, "--decoder", str(decoder), "--out",
                 str(tmp_path / "ais.tif")]) == 0  # fmt: skip
    assert tifffile.imread(tmp_path / "ais.tif").shape == (96, 96)
    assert main(["auto", *common, "--method", "amg", "--points-per-side", "4", "--out",
                 str(tmp_path / "amg.tif")]) == 0  # fmt: skip
    # no decoder in --weights and none given; a decoder file that is not one
    assert _exit(main, ["auto", *common, "--method", "ais", "--out", str(tmp_path / "x.tif")])
    assert _exit(main, ["auto", *common, "--decoder", str(weights), "--out",
                        str(tmp_path / "y.tif")])  # fmt: skip
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "y.tif").exists()


def _exit(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as err:
        return err.code


def _json(v):
    import json

    return json.dumps(list(v) if isinstance(v, tuple) else v)


def test_napari_segment_everything_job_writes_new_ids(micro_sam_files):
    from napari_sam._napari._everything import segment_slices
    from napari_sam._napari._session import Geometry, Session
    from napari_sam.segment.instances import write_instances
    from napari_sam.stacks.channels import ChannelSpec

    weights, decoder, _ = micro_sam_files
    model = create_model("vit_b_lm", pretrained=weights, decoder=decoder, **CFG)
    data = np.stack([make_nuclei_2d((96, 96), seed=s)[0] for s in (1, 2)])
    session = Session(model, data, Geometry(data.shape), ChannelSpec("single", (0,)).resolve(1),
                      None)  # fmt: skip
    index, instances = next(i for i in segment_slices(session, [(1,)]) if i[0] != "progress")
    assert index == (1,)
    assert instances.shape == (96, 96) and instances.dtype == np.uint32
    labels = np.zeros(data.shape, np.int32)
    labels[1, :3, :3] = 7
    instances = instances.copy()
    instances[:2, :2], instances[50:60, 50:60] = 1, 2  # force some objects
    ids = write_instances(labels, (1,), instances, overwrite=False)
    assert ids and min(ids) >= 8 and (labels[1, :2, :2] == 7).all() and not labels[0].any()
