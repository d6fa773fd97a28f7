"""Print the agreement with Meta's reference for full-size sam_vit_b, per prompt kind.

    python bench/parity_report.py

Builds Meta's ViT-B with every tensor perturbed, saves it like the official files, loads it
through ``create_model(..., pretrained=path)`` and compares the predictor end to end on a
480 x 640 uint8 image (needs the test extra: torch and segment-anything).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from napari_sam import SAMPredictor, create_model  # noqa: E402
from napari_sam.weights import model_config  # noqa: E402
from test_parity import ours, prompt_cases, theirs  # noqa: E402

from ref_models import (  # noqa: E402
    build_reference,
    reference_predictor,
    relative_error,
    save_like_official,  # noqa: E402
)


def main():
    sam = build_reference(model_config("sam_vit_b"), seed=11)
    img = np.random.default_rng(5).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sam_vit_b_random.pth"
        save_like_official(sam, path)
        ref = reference_predictor(sam)
        pred = SAMPredictor(create_model("sam_vit_b", pretrained=path))
        t0 = time.perf_counter()
        ref.set_image(img)
        t1 = time.perf_counter()
        pred.set_image(img)
        t2 = time.perf_counter()
    emb = pred.embedding.numpy()[0].transpose(2, 0, 1)
    print(f"image embedding: relative error {relative_error(emb, ref.features.numpy()[0]):.2e}")
    print(f"(encoder: reference {t1 - t0:.1f} s, napari-sam {t2 - t1:.1f} s incl. tracing)")
    print("| prompt | multimask | logits rel. error | max IoU-score diff | mask agreement |")
    print("|---|---|---|---|---|")
    for name, case in prompt_cases((480, 640)).items():
        for mm in (True, False):
            for with_mask in (False, True):
                want = theirs(ref, case, multimask=mm)
                prev = want[2][np.argmax(want[1])][None] if with_mask else None
                if prev is not None:
                    want = theirs(ref, case, prev, mm)
                got = ours(pred, case, prev, mm)
                label = name + (" + mask" if with_mask else "")
                agree = ((got[0] > 0) == (want[0] > 0)).mean()
                print(
                    f"| {label} | {mm} | {relative_error(got[2], want[2]):.1e} | "
                    f"{np.abs(got[1] - want[1]).max():.1e} | {100 * agree:.4f} % |"
                )


if __name__ == "__main__":
    main()
