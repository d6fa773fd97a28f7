"""Styles of synthetic nuclei images: presets of the generator for a held-out benchmark.

Each style is a set of :class:`~napari_sam.train.synthetic.NucleiParams` fields, named for
what real fluorescence images have that the default style lacks (issue [tiny-v2]):

- ``default``: the generator as ``sam_tiny_nuclei`` was trained on it.
- ``dim_textured``: most nuclei dim and grainy (strong chromatin texture, many spots), a few
  bright, shot noise dominating (few photons).
- ``elongated_crowded``: elongated, irregular nuclei (aspect ratios up to 2.5) pressed against
  each other in clusters.
- ``low_range_haze``: a low dynamic range in a 16-bit container (values up to about 235),
  few photons, a wide PSF (soft haze around nuclei) and a brighter background.
- ``mitotic_dim``: a few compact mitotic nuclei 3 to 5 x brighter than the rest, so that
  every other nucleus is dim once the image is normalised to its brightest pixels; a raised,
  noisy background, values up to about 235 in a 16-bit container, half the nuclei placed
  against another (as on [tiny-v2]'s real image, StarDist's DSB 2018 test image).

``python scripts/eval_styles.py`` measures the shipped model on each (docs/tiny-model.md).
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["STYLES", "style_names", "style_params"]

STYLES = MappingProxyType({
    "default": MappingProxyType({}),
    "dim_textured": MappingProxyType(dict(
        brightness_range=(0.12, 1.0), texture_strength=0.45, texture_sigma=1.0,
        n_spots=(3, 10), photon_scale=60.0)),
    "elongated_crowded": MappingProxyType(dict(
        axis_ratio_range=(0.4, 0.85), irregularity=0.2, touching_fraction=0.8, density=6e-4,
        max_overlap=0.25)),
    "low_range_haze": MappingProxyType(dict(
        bit_depth=16, offset=0.0, headroom=235 / 65535, photon_scale=40.0, read_noise=2.0,
        blur_sigma=1.8, background=0.12)),
    "mitotic_dim": MappingProxyType(dict(
        mitotic_fraction=0.07, brightness_range=(0.6, 1.0), texture_strength=0.15,
        bit_depth=16, offset=0.0, headroom=235 / 65535, photon_scale=60.0, read_noise=2.0,
        blur_sigma=1.2, background=0.25, touching_fraction=0.5, density=4e-4)),
})  # fmt: skip


def style_params(name: str) -> dict:
    """The generator fields of style ``name`` (ValueError naming the styles otherwise)."""
    if name not in STYLES:
        raise ValueError(f"style: unknown {name!r}; expected one of {', '.join(STYLES)}")
    return dict(STYLES[name])


def style_names(text: str) -> list[str]:
    """The styles of a command-line value: comma-separated names, or ``all`` (ValueError
    naming the styles for an unknown one)."""
    names = list(STYLES) if text == "all" else text.split(",")
    for name in names:
        style_params(name)
    return names
