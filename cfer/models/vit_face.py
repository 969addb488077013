"""Vision transformers sized for 64-pixel faces, registered with timm.

timm's ViTs cut a 224-pixel image into 16-pixel patches (14x14 tokens). A 64-pixel face
cut that way gives 4x4 tokens, too coarse for the eyes, brows and mouth corners an
expression lives in; with **8-pixel patches** a 64-pixel face gives 8x8 tokens (a patch
covers about one eye). These are timm's own :class:`~timm.models.vision_transformer.VisionTransformer`
at the published ViT widths (Dosovitskiy et al. 2021; Touvron et al. 2021 for the tiny
and small widths), with that patch and input size as their defaults:

===================  =========  =====  =====  =====  =======  =========  ======================
name                 embed dim  depth  heads  patch  image    params     use
===================  =========  =====  =====  =====  =======  =========  ======================
``vit_face_small``   384        12     6      8      64       21.4 M     larger pools
``vit_face_tiny``    192        12     3      8      64       5.4 M      ``cfer pretrain``'s default
``vit_face_mini``    96         6      3      8      64       0.7 M      CPU runs (4x tiny's speed)
``vit_face_micro``   32         2      2      8      64       26 k       tests
===================  =========  =====  =====  =====  =======  =========  ======================

``img_size`` may be changed (``create_backbone("vit_face_tiny", img_size=48)``: 6x6
tokens); the input grid is fixed once the model is built, as for every timm ViT. They have
no hub weights: pretrain one on unlabelled faces with ``cfer pretrain``
(:mod:`cfer.pretrain`) and load the encoder file it writes with ``weights=FILE``. Grad-CAM
reads the last block as for any timm ViT (:func:`cfer.explain.vit_reshape`).

Example:
    >>> import timm, torch, cfer.models
    >>> net = timm.create_model("vit_face_micro", num_classes=7)
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 7])
    >>> net.patch_embed.grid_size
    (8, 8)
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

__all__ = ["VIT_FACE_MODELS"]

VIT_FACE_MODELS = ("vit_face_small", "vit_face_tiny", "vit_face_mini", "vit_face_micro")
"""The face-sized ViTs, largest first."""


def _cfg(**kwargs: Any) -> dict:
    return {"url": "", "num_classes": 7, "input_size": (3, 64, 64), "pool_size": None, "crop_pct": 1.0,
            "interpolation": "bilinear", "fixed_input_size": True, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
            "first_conv": "patch_embed.proj", "classifier": "head", **kwargs}


default_cfgs = generate_default_cfgs({name: _cfg() for name in VIT_FACE_MODELS})

_VARIANTS: dict[str, dict[str, Any]] = {
    "vit_face_small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_face_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_face_mini": dict(embed_dim=96, depth=6, num_heads=3),
    "vit_face_micro": dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
}


def _create_vit_face(variant: str, pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    if pretrained:
        raise ValueError(f"{variant!r} is one of cfer's own models and has no hub weights: create it with "
                         "pretrained=False and load a local file (cfer.models.load_weights(model, path), or "
                         "weights=FILE); `cfer pretrain` writes one from unlabelled faces")
    args = dict(patch_size=8, img_size=64, **_VARIANTS[variant])
    return build_model_with_cfg(VisionTransformer, variant, pretrained=False, pretrained_filter_fn=checkpoint_filter_fn,
                                **{**args, **kwargs})


@register_model
def vit_face_small(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Small widths with 8-pixel patches on 64-pixel faces (8x8 tokens)."""
    return _create_vit_face("vit_face_small", pretrained=pretrained, **kwargs)


@register_model
def vit_face_tiny(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Tiny widths with 8-pixel patches on 64-pixel faces (8x8 tokens)."""
    return _create_vit_face("vit_face_tiny", pretrained=pretrained, **kwargs)


@register_model
def vit_face_mini(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Half ViT-Tiny's width and depth (96 wide, six blocks, 0.7 M parameters) with 8-pixel
    patches: trains about four times as fast as ``vit_face_tiny`` on a CPU."""
    return _create_vit_face("vit_face_mini", pretrained=pretrained, **kwargs)


@register_model
def vit_face_micro(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 26-thousand-parameter face ViT for tests (width 32, two blocks)."""
    return _create_vit_face("vit_face_micro", pretrained=pretrained, **kwargs)
