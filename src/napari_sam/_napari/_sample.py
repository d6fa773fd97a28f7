"""Sample data: a two-channel 3-D stack of synthetic nuclei with its true labels."""

from __future__ import annotations


def make_sample_data(seed: int = 0):
    """napari layer data: the image (C, Z, Y, X) and the true labels (Z, Y, X).

    The channel axis comes first so that (Z, Y, X) Labels layers align with the image; the
    nuclei are in channel 0, which the widget uses by default (mode ``single``).
    """
    from ..train.synthetic import make_sample_stack

    image, labels = make_sample_stack(seed)
    image = image.transpose(1, 0, 2, 3)  # (Z, C, Y, X) -> (C, Z, Y, X)
    return [
        (
            image,
            {
                "name": "nuclei stack",
                "contrast_limits": [0, int(image.max())],
                "axis_labels": ("c", "z", "y", "x"),
            },
            "image",
        ),  # fmt: skip
        (
            labels,
            {"name": "true nuclei", "visible": False, "axis_labels": ("z", "y", "x")},
            "labels",
        ),
    ]
