"""The reconstruction figure: masked input, reconstruction and original, one face a column.

Example:
    >>> fig = reconstruction_figure(model=result.model, images=faces[:8])   # doctest: +SKIP
    >>> save_figure(fig, "reconstruction.png")                               # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch

from cfer.pretrain.mae import MaskedAutoencoder

__all__ = ["reconstruction_figure"]


def reconstruction_figure(*, model: MaskedAutoencoder, images: torch.Tensor, seed: int = 0,
                          title: str | None = None) -> Any:
    """A matplotlib figure of three rows: the masked input (dropped patches grey), the
    reconstruction (predicted patches where masked, the input where seen) and the original.

    Args:
        model: A (pretrained) masked autoencoder.
        images: Up to a dozen faces ``(B, C, H, W)`` in [0, 1] at the model's input size.
        seed: Seed of the random masks drawn for the figure (the caller's generator is untouched).
        title: Figure title (default: the mask ratio).

    Returns:
        The ``matplotlib.figure.Figure`` (write it with :func:`cfer.atomic.save_figure`).

    Example:
        >>> fig = reconstruction_figure(model=mae, images=torch.rand(4, 1, 32, 32))   # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"expected a batch of images (B, C, H, W), got {tuple(images.shape)}")
    images = images[:12]
    was = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        masked, recon = model.reconstruct(images)
    model.train(was)
    rows = [("masked input", masked), ("reconstruction", recon), ("original", images)]
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n + 1.2, 4.4), squeeze=False)
    for r, (name, batch) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            img = batch[c].detach().float().clamp(0, 1).permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(title or f"masked autoencoder: {model.mask_ratio:.0%} of the patches masked", fontsize=10)
    fig.tight_layout()
    return fig
