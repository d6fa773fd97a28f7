"""micro-sam's fine-tuned SAM models: where their two files are and how they are checked.

From micro-sam 1.8.10 (``micro_sam/util.py`` ``models()``, ``micro_sam/_model_settings.py``).
Each model is a SAM encoder file (Meta's keys) and an instance-decoder file, on bioimage.io's
S3 host, verified by xxh128 as micro-sam does. Their sizes are not recorded (they could not be
read offline): the hash alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from .download import WeightFile

__all__ = ["MICRO_SAM_BASE_URL", "MICRO_SAM_MODELS", "MOBILE_SAM", "MicroSamModel"]

MICRO_SAM_BASE_URL = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"


@dataclass(frozen=True)
class MicroSamModel:
    """One micro-sam model: its SAM size, its two files and its watershed defaults."""

    key: str
    sam: str  # the registered architecture: sam_vit_b, sam_vit_l or sam_vit_t (MobileSAM)
    encoder: WeightFile
    decoder: WeightFile
    ais: MappingProxyType


def _model(key, sam, record, size, encoder_hash, decoder_hash, ais):
    def weight(suffix, filename, digest):
        return WeightFile(
            f"{key}{suffix}.pt",
            f"{MICRO_SAM_BASE_URL}{record}/files/{filename}",
            digest,
            None,
            algorithm="xxh128",
            micro_sam_key=f"{key}{suffix}",
        )

    return MicroSamModel(
        key,
        sam,
        weight("", f"{size}.pt", encoder_hash),
        weight("_decoder", f"{size}_decoder.pt", decoder_hash),
        MappingProxyType(ais),
    )


def _ais(center, boundary, smoothing, min_size=100):
    return {
        "center_distance_threshold": center,
        "boundary_distance_threshold": boundary,
        "distance_smoothing": smoothing,
        "min_size": min_size,
    }


MICRO_SAM_MODELS: dict[str, MicroSamModel] = {
    m.key: m
    for m in (
        _model("vit_b_lm", "sam_vit_b", "diplomatic-bug/1.2", "vit_b",
               "fe9252a29f3f4ea53c15a06de471e186", "708b15ac620e235f90bb38612c4929ba",
               _ais(0.4, 0.5, 2.0)),
        _model("vit_l_lm", "sam_vit_l", "idealistic-rat/1.2", "vit_l",
               "017f20677997d628426dec80a8018f9d", "2faeafa03819dfe03e7c46a44aaac64a",
               _ais(0.4, 0.4, 1.6)),
        _model("vit_b_em_organelles", "sam_vit_b", "noisy-ox/1.2", "vit_b",
               "f3bf2ed83d691456bae2c3f9a05fb438", "bb6398956a6b0132c26b631c14f95ce2",
               _ais(0.3, 0.4, 1.2)),
        _model("vit_l_em_organelles", "sam_vit_l", "humorous-crab/1.2", "vit_l",
               "810b084b6e51acdbf760a993d8619f2d", "334877640bfdaaabce533e3252a17294",
               _ais(0.3, 0.4, 1.2)),
        # on MobileSAM's TinyViT (sam_vit_t)
        _model("vit_t_lm", "sam_vit_t", "faithful-chicken/1.1", "vit_t",
               "72ec5074774761a6e5c05a08942f981e", "3e914a5f397b0312cdd36813031f8823",
               _ais(0.5, 0.5, 2.0)),
        _model("vit_t_em_organelles", "sam_vit_t", "greedy-whale/1", "vit_t",
               "253474720c497cce605e57c9b1d18fd9", "8f897c7bb93174a4d1638827c4dd6f44",
               _ais(0.4, 0.5, 1.2)),
    )
}  # fmt: skip

#: MobileSAM's weights (a TinyViT image encoder with SAM's prompt encoder and mask decoder), as
#: micro-sam hosts and checks them (its ``vit_t``).
MOBILE_SAM = WeightFile(
    "vit_t.pt",
    "https://owncloud.gwdg.de/index.php/s/TuDzuwVDHd1ZDnQ/download",
    "8eadbc88aeb9d8c7e0b4b60c3db48bd0",
    None,
    algorithm="xxh128",
    micro_sam_key="vit_t",
)
