"""micro-sam's embedding zarr stores, written by micro-sam 1.8.10 itself, read by napari-sam.

The reference is micro-sam's ``precompute_image_embeddings`` (test-only, installed without its
dependencies; torchvision through the test shim of reference.py) with Meta's ``SamPredictor``
around a perturbed random SAM; prompts on the stored embeddings must give Meta's masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam import SAMPredictor, create_model
from napari_sam.stacks.micro_sam_embeddings import MicroSamEmbeddings
from napari_sam.weights import model_config

from ref_models import build_reference, reference_predictor
from reference import import_segment_anything
from small_configs import TINY

# a narrow encoder at SAM's input size: micro-sam's stacks assume (256, 64, 64) embeddings
CFG = dict(TINY, input_size=(1024, 1024), encoder_patch_size=16, embed_dim=256)
POINTS = np.array([[40.0, 30.0], [70.0, 52.0]])


def _micro_sam_util():
    import_segment_anything()  # torchvision shim first: micro_sam.util imports it
    import micro_sam.util  # scripts/setup.sh installs it (test-only)

    return micro_sam.util


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    util = _micro_sam_util()
    sam = build_reference(model_config("vit_b_lm", **CFG), seed=3)
    predictor = reference_predictor(sam)
    predictor.model_type = predictor.model_name = "vit_b_lm"  # as micro-sam's get_sam_model
    rng = np.random.default_rng(0)
    image = rng.integers(100, 3000, (90, 120)).astype(np.uint16)  # 16-bit, not square
    stack = rng.integers(100, 3000, (3, 90, 120)).astype(np.uint16)
    folder = tmp_path_factory.mktemp("micro_sam_zarr")
    for name, data in (("image.zarr", image), ("stack.zarr", stack)):
        util.precompute_image_embeddings(predictor, data, save_path=str(folder / name),
                                         verbose=False)  # fmt: skip
    return util, sam, image, stack, folder


def _stat(path):
    return sorted((p.relative_to(path), p.stat().st_mtime_ns) for p in path.rglob("*"))


def _model_of(sam, folder):
    torch.save(sam.state_dict(), folder / "vit_b.pt")  # as micro-sam's vit_b.pt
    return create_model("vit_b_lm", pretrained=folder / "vit_b.pt", decoder=False, **CFG)


def test_image_store_gives_meta_masks(reference, tmp_path):
    util, sam, image, _, folder = reference
    path = folder / "image.zarr"
    before = _stat(path)
    store = MicroSamEmbeddings(path, image=image, model="vit_b_lm")
    assert len(store) == 1 and store.original_size == (90, 120) and store.input_size == (768, 1024)
    ours = SAMPredictor(_model_of(sam, tmp_path))
    store.set_on(ours)
    ref = reference_predictor(sam)
    ref.model_type = ref.model_name = "vit_b_lm"
    util.set_precomputed(ref, util.precompute_image_embeddings(ref, image, save_path=str(path),
                                                               verbose=False))  # fmt: skip
    labels = np.array([1, 0])
    with torch.no_grad():
        want, _, _ = ref.predict(point_coords=POINTS, point_labels=labels)
    got, _, _ = ours(points=POINTS, labels=labels)
    assert got.shape == want.shape and (got == want).mean() >= 0.999
    assert _stat(path) == before  # read only: nothing written


def test_stack_store_slices(reference):
    _, _, _, stack, folder = reference
    store = MicroSamEmbeddings(folder / "stack.zarr", image=stack)
    assert len(store) == 3 and store.is_stack
    import zarr

    raw = zarr.open_group(str(folder / "stack.zarr"), mode="r")["features"]
    for z in range(3):
        np.testing.assert_array_equal(store.get(z), np.asarray(raw[z]).transpose(0, 2, 3, 1))


def test_wrong_image_model_or_folder_is_named(reference, tmp_path):
    _, _, image, _, folder = reference
    path = folder / "image.zarr"
    with pytest.raises(ValueError, match=f"{path}: embeddings of another image"):
        MicroSamEmbeddings(path, image=image + 1)
    with pytest.raises(ValueError, match=f"{path}: embeddings of model 'vit_b_lm', not 'vit_l_lm'"):
        MicroSamEmbeddings(path, model="vit_l_lm")
    with pytest.raises(ValueError, match="not a"):
        MicroSamEmbeddings(tmp_path)


def test_tiled_store_is_refused_by_name(reference):
    util, sam, image, _, folder = reference
    path = folder / "tiled.zarr"
    predictor = reference_predictor(sam)
    predictor.model_type = predictor.model_name = "vit_b_lm"
    util.precompute_image_embeddings(predictor, image, save_path=str(path), tile_shape=(64, 64),
                                     halo=(16, 16), verbose=False)  # fmt: skip
    with pytest.raises(ValueError, match=f"{path}: a tiled micro-sam store"):
        MicroSamEmbeddings(path)


def test_damaged_stores_are_named_not_used(reference, tmp_path):
    """NaN features and a missing original_size: a ValueError naming the store ([hardening-2])."""
    import shutil

    import zarr

    _, _, _, _, folder = reference
    nan, unsized = tmp_path / "nan.zarr", tmp_path / "unsized.zarr"
    for path in (nan, unsized):
        shutil.copytree(folder / "image.zarr", path)
    features = zarr.open_group(str(nan), mode="r+")["features"]
    features[0, 5, 3, 4] = np.nan
    with pytest.raises(ValueError, match=f"{nan}: slice 0's embedding holds NaN or infinite"):
        MicroSamEmbeddings(nan).get(0)
    group = zarr.open_group(str(unsized), mode="r+")
    del group.attrs["original_size"]
    with pytest.raises(ValueError, match=f"{unsized}: the attribute original_size is None"):
        MicroSamEmbeddings(unsized)
