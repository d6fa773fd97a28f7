"""torch-em's UNETR and watershed as the reference for micro-sam's instance decoder (test-only).

``torch_em/__init__.py`` imports its data and training stack (torchvision, kornia,
bioimageio.core, ...), which is not installed here; the model and segmentation modules need only
torch, numpy, scikit-image, bioimage-cpp and python-elf. :func:`import_torch_em` registers the
installed package's directories as empty parent packages, so the real, unmodified
``torch_em.model.unetr`` and ``torch_em.util.segmentation`` modules import without running the
package's ``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
import types

import torch


def import_torch_em():
    """Return (``torch_em.model.unetr``, ``torch_em.util.segmentation``), the real modules."""
    if "torch_em" not in sys.modules or not hasattr(sys.modules["torch_em"], "__path__"):
        spec = importlib.util.find_spec("torch_em")
        if spec is None or spec.origin is None:
            raise ImportError("torch_em is not installed (scripts/setup.sh installs it)")
        root = pathlib.Path(spec.origin).parent
        for name, path in (("torch_em", root), ("torch_em.model", root / "model"),
                           ("torch_em.util", root / "util")):  # fmt: skip
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module
    unetr = importlib.import_module("torch_em.model.unetr")
    segmentation = importlib.import_module("torch_em.util.segmentation")
    return unetr, segmentation


def build_reference_unetr(image_encoder, conv_transpose: bool, seed: int = 0):
    """torch-em's UNETR exactly as ``micro_sam.instance_segmentation.get_unetr`` builds it.

    Every decoder tensor is perturbed (BatchNorm variances stay positive), so no default
    initialisation (ones, zeros) can hide a mapping error.
    """
    unetr_module, _ = import_torch_em()
    torch.manual_seed(seed)
    unetr = unetr_module.UNETR(
        backbone="sam",
        encoder=image_encoder,
        out_channels=3,
        use_sam_stats=True,
        final_activation="Sigmoid",
        use_skip_connection=False,
        resize_input=True,
        use_conv_transpose=conv_transpose,
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in unetr.state_dict().items():
            if name.startswith("encoder") or not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype)
            if name.endswith("running_var"):
                tensor.mul_(torch.exp(0.3 * noise))
            else:
                tensor.add_(0.05 * noise)
        for name, tensor in unetr.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(1000 + seed)
    return unetr.eval()


def decoder_state(unetr) -> dict:
    """The decoder's state as micro-sam saves it in ``vit_b_decoder.pt`` (no ``encoder.``)."""
    return {k: v for k, v in unetr.state_dict().items() if not k.startswith("encoder")}


@torch.no_grad()
def reference_maps(unetr, embedding_nhwc, input_size, original_size):
    """torch-em's decoder maps (3, H, W) for one embedding, as micro-sam's DecoderAdapter."""
    z12 = torch.from_numpy(embedding_nhwc).permute(0, 3, 1, 2).contiguous()
    out = unetr.decode((z12, None, None), tuple(input_size), tuple(original_size))
    return out[0].numpy()
