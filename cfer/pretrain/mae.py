"""A masked autoencoder around any timm ViT: mask most patches, encode the rest, rebuild the image.

After He et al. 2022 ("Masked Autoencoders Are Scalable Vision Learners"): the image is cut
into patches; a random ``mask_ratio`` of them (75%) is **dropped before the transformer
blocks**, so the encoder sees only a quarter of the tokens (that is where the speed comes
from); a light decoder (``decoder_depth`` blocks, one by default, of width ``decoder_dim``)
puts a shared mask token at every dropped position, adds fixed 2-D sine-cosine positions and predicts
every patch's pixels; the loss is the mean squared error **on the masked patches only**,
against each patch's pixels normalised by its own mean and variance (``norm_pix_loss``).

The encoder is the timm model itself (``timm.create_model(name, num_classes=0, ...)``), so
its ``state_dict()`` is what ``cfer.models.create_backbone(name, weights=FILE)`` loads.

Example:
    >>> import timm, torch, cfer.models
    >>> mae = MaskedAutoencoder(encoder=timm.create_model("vit_face_micro", num_classes=0, img_size=32))
    >>> out = mae(torch.rand(2, 3, 32, 32))
    >>> out.pred.shape, int(out.mask.sum(1)[0])          # 16 patches of 8x8x3, 12 masked
    (torch.Size([2, 16, 192]), 12)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MaskedAutoencoder", "MAEOutput", "patchify", "unpatchify", "kept_tokens"]


@dataclass
class MAEOutput:
    """What a forward pass gives.

    Attributes:
        loss: Mean squared error on the masked patches (scalar).
        pred: Predicted patch pixels ``(B, N, p*p*C)`` (normalised per patch with ``norm_pix_loss``).
        mask: ``(B, N)``, 1 where a patch was masked (the loss is taken there), 0 where it was seen.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H/p * W/p, p*p*C)``, patches in row-major order, pixels ``(p, p, C)``."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, *, grid: tuple[int, int], channels: int) -> torch.Tensor:
    """The inverse of :func:`patchify`."""
    b, (gh, gw) = patches.shape[0], grid
    x = patches.reshape(b, gh, gw, patch, patch, channels)
    return torch.einsum("bhwpqc->bchpwq", x).reshape(b, channels, gh * patch, gw * patch)


def kept_tokens(n_patches: int, mask_ratio: float) -> int:
    """How many of ``n_patches`` patch tokens the encoder sees: ``int(n * (1 - mask_ratio))``, at least 1."""
    return max(1, int(n_patches * (1.0 - mask_ratio) + 1e-9))


def _sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions ``(gh * gw, dim)`` (half the channels for each axis)."""
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine embedding needs a width divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64), torch.arange(grid[1], dtype=torch.float64),
                            indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    parts = [torch.outer(axis.flatten(), omega) for axis in (ys, xs)]
    return torch.cat([f(p) for p in parts for f in (torch.sin, torch.cos)], dim=1).float()


class MaskedAutoencoder(nn.Module):
    """A timm ViT encoder, random patch masking before its blocks, and a light decoder.

    Args:
        encoder: A timm ``VisionTransformer`` (``patch_embed``, ``_pos_embed``, ``blocks``,
            ``norm``), built with ``num_classes=0`` and a fixed input grid.
        mask_ratio: Share of patches dropped before the encoder (in ``[0, 1)``).
        decoder_dim: Width of the decoder.
        decoder_depth: Transformer blocks in the decoder.
        decoder_heads: Attention heads of the decoder.
        norm_pix_loss: Predict each patch normalised by its own mean and variance.
        sincos_init: Start the encoder's learned position embedding from 2-D sine-cosine
            positions (the patch tokens' part; it stays trainable).

    Raises:
        TypeError: If ``encoder`` is not a ViT-like timm model.
        ValueError: For a mask ratio outside ``[0, 1)`` or decoder widths that do not fit.

    Example:
        >>> mae = MaskedAutoencoder(encoder=timm.create_model("vit_face_micro", num_classes=0))  # doctest: +SKIP
    """

    def __init__(self, *, encoder: nn.Module, mask_ratio: float = 0.75, decoder_dim: int = 128,
                 decoder_depth: int = 1, decoder_heads: int = 4, norm_pix_loss: bool = True,
                 sincos_init: bool = True) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        missing = [a for a in ("patch_embed", "_pos_embed", "blocks", "norm") if not hasattr(encoder, a)]
        if missing:
            raise TypeError(f"{type(encoder).__name__} is not a timm VisionTransformer (it lacks {missing}); give a "
                            "ViT such as vit_face_tiny or vit_tiny_patch16_224")
        if getattr(encoder, "dynamic_img_size", False):
            raise ValueError("the encoder was built with dynamic_img_size=True; build it with a fixed img_size")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio!r} (0.75 masks three patches of four)")
        if decoder_dim % decoder_heads or decoder_dim % 4:
            raise ValueError(f"decoder_dim {decoder_dim} must be divisible by decoder_heads {decoder_heads} and by 4")
        self.encoder = encoder
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = norm_pix_loss
        pe = encoder.patch_embed
        side = tuple(int(v) for v in pe.img_size)
        if any(v % int(p) for v, p in zip(side, pe.patch_size)):
            lower, upper = (side[0] // pe.patch_size[0] * pe.patch_size[0],
                            -(-side[0] // pe.patch_size[0]) * pe.patch_size[0])
            raise ValueError(f"the image side {side[0]} is not a multiple of the encoder's {pe.patch_size[0]}-pixel "
                             f"patches: use {lower} or {upper} (--image-size)")
        self.patch = int(pe.patch_size[0])
        self.grid = tuple(int(g) for g in pe.grid_size)
        self.channels = int(pe.proj.in_channels)
        self.prefix = int(getattr(encoder, "num_prefix_tokens", 0))
        n, dim = self.grid[0] * self.grid[1], int(encoder.embed_dim)
        if sincos_init and getattr(encoder, "pos_embed", None) is not None:
            with torch.no_grad():
                pos = encoder.pos_embed
                if pos.shape[1] in (n, n + self.prefix) and dim % 4 == 0:
                    pos[0, pos.shape[1] - n:] = _sincos_2d(self.grid, dim)
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos", _sincos_2d(self.grid, decoder_dim)[None], persistent=False)
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * self.channels)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def n_patches(self) -> int:
        """Patches per image."""
        return self.grid[0] * self.grid[1]

    def random_masking(self, tokens: torch.Tensor, *, mask_ratio: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep a random subset of the patch tokens ``(B, N, D)`` of each image.

        Returns:
            ``(kept (B, K, D), mask (B, N) with 1 = dropped, ids_restore (B, N))``, with
            ``K = kept_tokens(N, mask_ratio)``.
        """
        b, n, d = tokens.shape
        keep = kept_tokens(n, self.mask_ratio if mask_ratio is None else mask_ratio)
        noise = torch.rand(b, n, device=tokens.device)
        ids_shuffle = noise.argsort(dim=1)
        ids_restore = ids_shuffle.argsort(dim=1)
        kept = tokens.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        mask = torch.ones(b, n, device=tokens.device)
        mask[:, :keep] = 0
        return kept, mask.gather(1, ids_restore), ids_restore

    def forward_encoder(self, images: torch.Tensor, *, mask_ratio: float | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the kept patches: ``(latent (B, prefix + K, D), mask, ids_restore)``."""
        enc = self.encoder
        x = enc._pos_embed(enc.patch_embed(images))  # prefix tokens + positions, as the encoder's own forward
        prefix, patches = x[:, :self.prefix], x[:, self.prefix:]
        kept, mask, ids_restore = self.random_masking(patches, mask_ratio=mask_ratio)
        x = enc.norm_pre(enc.patch_drop(torch.cat([prefix, kept], dim=1)))
        return enc.norm(enc.blocks(x)), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch's pixels ``(B, N, p*p*C)`` from the encoded kept patches."""
        x = self.decoder_embed(latent[:, self.prefix:])
        b, k, d = x.shape
        x = torch.cat([x, self.mask_token.expand(b, ids_restore.shape[1] - k, -1)], dim=1)
        x = x.gather(1, ids_restore[:, :, None].expand(-1, -1, d)) + self.decoder_pos
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """The patches the decoder should predict (normalised per patch with ``norm_pix_loss``)."""
        t = patchify(images, self.patch)
        if self.norm_pix_loss:
            t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
        return t

    def loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the masked patches only."""
        per_patch = (pred - self.target(images)).pow(2).mean(-1)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(self, images: torch.Tensor, *, mask_ratio: float | None = None) -> MAEOutput:
        if images.ndim != 4 or images.shape[1] != self.channels or tuple(images.shape[-2:]) != tuple(
                g * self.patch for g in self.grid):
            raise ValueError(f"expected images (B, {self.channels}, {self.grid[0] * self.patch}, "
                             f"{self.grid[1] * self.patch}), got {tuple(images.shape)}; build the encoder with "
                             "this img_size and in_chans")
        latent, mask, ids_restore = self.forward_encoder(images, mask_ratio=mask_ratio)
        pred = self.forward_decoder(latent, ids_restore)
        return MAEOutput(loss=self.loss(images, pred, mask), pred=pred, mask=mask)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input, reconstruction)`` images in pixel space for a figure: masked
        patches grey in the input; the reconstruction shows the prediction where patches
        were masked and the input where they were seen (a normalised prediction is put back
        to each patch's own mean and variance, as in He et al.'s figures)."""
        out = self(images)
        pred, seen = out.pred, patchify(images, self.patch)
        if self.norm_pix_loss:
            pred = pred * (seen.var(-1, keepdim=True) + 1e-6).sqrt() + seen.mean(-1, keepdim=True)
        m = out.mask[:, :, None]
        shape = dict(grid=self.grid, channels=self.channels)
        masked = unpatchify(seen * (1 - m) + 0.5 * m, self.patch, **shape)
        recon = unpatchify(seen * (1 - m) + pred * m, self.patch, **shape)
        return masked, recon.clamp(0, 1)
