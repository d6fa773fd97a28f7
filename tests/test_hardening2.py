"""The second probe of careless and hostile use ([hardening-2]): each numbered case a test.

Nothing the user made is lost or taken for done, no silent wrong result, one line per mistake.
(Case 1, the dask route's temporary store, is in ``test_distributed.py``; case 2, the
checkpoint zip bomb, in ``test_pth_reader.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam.io.labels import label_source, write_label_tiff
from test_bad_input import AUTO, model_args, one_error, snapshot
from test_cli_embed import SMALL, run_main, stack, write_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("w") / "small.npz", SMALL)


# -- 3. only this program's labels of this input count as done -------------------------------


@pytest.mark.parametrize("other", ["unrelated", "labels_of_another_input"])
def test_an_existing_output_that_is_not_ours_is_refused_not_skipped(weights, tmp_path, capsys,
                                                                    other):  # fmt: skip
    img, out = tmp_path / "x.tif", tmp_path / "x_labels.tif"
    tifffile.imwrite(img, stack(1)[0])
    if other == "unrelated":
        tifffile.imwrite(out, np.ones((5, 7), np.uint8))  # the user's file, not tagged
    else:
        write_label_tiff(out, np.ones((5, 7), np.uint16), "YX", source="y.tif")
    before = snapshot(tmp_path)
    code, _, err = run_main(capsys, "auto", img, "--out", out, *model_args(weights), *AUTO)
    one_error(code, err, r"--out: '.*x_labels\.tif' exists and is not napari-sam's labels of "
                         r"'x\.tif'; pass --overwrite")  # fmt: skip
    assert snapshot(tmp_path) == before
    code, stdout, err = run_main(capsys, "auto", img, "--out", out, "--overwrite",
                                 *model_args(weights), *AUTO)  # fmt: skip
    assert code == 0 and "wrote 1 label image(s)" in stdout, err
    assert label_source(out) == "x.tif"
    code, stdout, err = run_main(capsys, "auto", img, "--out", out, *model_args(weights), *AUTO)
    assert code == 0 and "wrote 0 label image(s), skipped 1 already done" in stdout, err
