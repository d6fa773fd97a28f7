"""Configuration of a Segment Anything model (the spec's ``SegmentAnythingModelConfig``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class SegmentAnythingModelConfig:
    """Configuration class for SAM models.

    Parameters
    ----------
    name : str
        Name of the model.
    url : str
        URL for pretrained weights.
    in_channels : int
        Number of input image channels.
    input_size : tuple of int
        Input image size (height, width).
    fixed_input_size : bool
        If True, the model only accepts inputs of size ``input_size``. If False, it accepts
        arbitrary input sizes by interpolating the positional encodings.
    embed_dim : int
        The shared embedding dimension of image and prompt embeddings.
    nb_multimask_outputs : int
        Number of masks predicted by the model for each prompt.
    mask_threshold : float
        Threshold for turning mask logits into a boolean mask.
    encoder_patch_size, encoder_embed_dim, encoder_nb_blocks, encoder_nb_heads : int
        Patch size, hidden width, depth and number of heads of the ViT image encoder.
    encoder_mlp_ratio : float
        Ratio of the MLP hidden dimension to the embedding dimension.
    encoder_drop_rate, encoder_attn_drop_rate, encoder_drop_path_rate : float
        Dropout, attention dropout and stochastic depth rates (training only).
    encoder_norm_layer : str
        Normalisation layer, see :func:`napari_sam.model.layers.norm_layer_factory`.
    encoder_act_layer : str
        Activation function, see :func:`napari_sam.model.layers.act_layer_factory`.
    encoder_qkv_bias : bool
        If True, add a bias to the qkv projection.
    encoder_global_attn_indices : tuple of int
        Blocks using global attention; all other blocks use window attention.
    encoder_window_size : int
        Window size of the window attention blocks.
    prompt_mask_hidden_dim : int
        Hidden dimension of the mask prompt encoder.
    decoder_nb_blocks, decoder_nb_heads, decoder_mlp_channels : int
        Depth, heads and MLP width of the mask decoder's two-way transformer.
    decoder_iou_head_depth, decoder_iou_hidden_dim : int
        Depth and width of the IoU prediction head.
    mean, std : tuple of float
        Preprocessing ``(x - mean) / std`` for pixel values in [0, 1]; one entry per channel.
    first_conv : str
        Path of the first convolutional layer (``/``-separated attribute path); used by
        :func:`napari_sam.create_model` to adapt the number of input channels.

    Attributes
    ----------
    encoder : str
        The image encoder, by class: ``"vit"`` here (Meta's ViT, configured by the
        ``encoder_*`` fields), ``"tiny_vit"`` for :class:`TinyViTModelConfig`.
    """

    name: str = ""
    url: str = ""
    in_channels: int = 3
    input_size: tuple[int, int] = (1024, 1024)
    fixed_input_size: bool = True
    embed_dim: int = 256
    nb_multimask_outputs: int = 3
    mask_threshold: float = 0.0
    encoder_patch_size: int = 16
    encoder_embed_dim: int = 768
    encoder_nb_blocks: int = 12
    encoder_nb_heads: int = 12
    encoder_mlp_ratio: float = 4.0
    encoder_drop_rate: float = 0.0
    encoder_attn_drop_rate: float = 0.0
    encoder_drop_path_rate: float = 0.0
    encoder_norm_layer: str = "layer_norm_eps_1e-6"
    encoder_act_layer: str = "gelu"
    encoder_qkv_bias: bool = True
    encoder_global_attn_indices: tuple[int, ...] = (2, 5, 8, 11)
    encoder_window_size: int = 14
    prompt_mask_hidden_dim: int = 16
    decoder_nb_blocks: int = 2
    decoder_nb_heads: int = 8
    decoder_mlp_channels: int = 2048
    decoder_iou_head_depth: int = 3
    decoder_iou_hidden_dim: int = 256
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    first_conv: str = "image_encoder/patch_embed/proj"
    #: The image encoder, fixed by the class (not a field: the spec's fields are all there is)
    encoder: ClassVar[str] = "vit"

    def __post_init__(self):
        self.input_size = _pair("input_size", self.input_size)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.encoder_global_attn_indices = tuple(int(i) for i in self.encoder_global_attn_indices)
        if int(self.in_channels) < 1:
            raise ValueError(f"in_channels must be a positive integer, got {self.in_channels!r}")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ValueError(
                f"mean and std need one value per input channel ({self.in_channels}), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        p = self.encoder_patch_size if self.encoder == "vit" else 32  # TinyViT: 4 x 2 x 2 x 2
        if self.input_size[0] % p or self.input_size[1] % p:
            raise ValueError(
                f"input_size {self.input_size} must be a multiple of "
                f"{'encoder_patch_size ' if self.encoder == 'vit' else ''}{p}"
            )
        if self.encoder_embed_dim % self.encoder_nb_heads:
            raise ValueError("encoder_embed_dim must be divisible by encoder_nb_heads")
        step = math.lcm(8, 2 * self.decoder_nb_heads)  # the decoder's attention and upscaling
        if self.embed_dim % step:
            raise ValueError(
                f"embed_dim {self.embed_dim} must be a multiple of {step} (8 and twice "
                f"decoder_nb_heads {self.decoder_nb_heads})"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serialisable dictionary."""
        d = dataclasses.asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        if self.encoder != "vit":  # which class to make again
            d["encoder"] = self.encoder
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentAnythingModelConfig:
        """Create a configuration from :meth:`to_dict`'s output; unknown keys are an error."""
        d = dict(d)
        encoder = d.pop("encoder", "vit")
        kinds = {c.encoder: c for c in (SegmentAnythingModelConfig, TinyViTModelConfig)}
        if encoder not in kinds:
            raise ValueError(f"encoder: expected one of {sorted(kinds)}, got {encoder!r}")
        target = kinds[encoder]
        names = {f.name for f in dataclasses.fields(target)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SegmentAnythingModelConfig fields: {sorted(unknown)}")
        return target(**d)

    def replace(self, **changes: Any) -> SegmentAnythingModelConfig:
        """Return a copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


@dataclass
class TinyViTModelConfig(SegmentAnythingModelConfig):
    """A SAM whose image encoder is MobileSAM's TinyViT (:mod:`napari_sam.model.tiny_vit`):
    the same fields, of which the ``encoder_*`` ones do not apply (its total stride is 16,
    ``encoder_patch_size``'s default); inputs are multiples of 32."""

    encoder: ClassVar[str] = "tiny_vit"
    first_conv: str = "image_encoder/patch_embed/seq/0/c"


def _pair(name: str, value) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of ints (height, width), got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return h, w
