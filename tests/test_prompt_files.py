"""Prompt files: the CSV napari writes for the plugin's Points layer (``positive`` column)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.prompt_files import PromptFileError, read_prompts
from napari_sam.stacks import StackView


def test_positive_column_of_the_plugins_points_layer(tmp_path):
    view = StackView(np.zeros((3, 20, 30), np.uint8), "ZYX")
    csv = tmp_path / "p.csv"
    csv.write_text(
        "index,axis-0,axis-1,axis-2,positive\n0,1.0,5.0,7.0,True\n1,1.0,9.0,12.0,False\n"
    )
    (obj,) = read_prompts(csv, view)
    pts, labels, box = obj.arrays()
    np.testing.assert_array_equal(pts, [[7.0, 5.0], [12.0, 9.0]])  # x, y
    np.testing.assert_array_equal(labels, [1.0, 0.0])
    assert box is None
    csv.write_text("index,axis-0,axis-1,axis-2,positive\n0,1.0,5.0,7.0,maybe\n")
    with pytest.raises(PromptFileError, match="line 2: positive 'maybe' must be True or False"):
        read_prompts(csv, view)
