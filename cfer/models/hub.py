"""Pretrained weights from the Hugging Face hub, through timm's own loading.

For users with internet (or with a filled cache): ``create_backbone(name, pretrained=True)``
loads the default weights timm names for ``name`` (``"resnet18"`` -> ``timm/resnet18.a1_in1k``),
``create_backbone("resnet50.a1_in1k", pretrained=True)`` a tag's weights, and
``create_backbone("resnet50", weights="hf-hub:ORG/NAME")`` (or ``weights="resnet50.a1_in1k"``,
a timm tag) the weights of any hub repository holding that architecture. Everything goes
through ``timm.create_model(..., pretrained=True)``: the Hugging Face cache
(``$HF_HOME/hub``, ``models--ORG--NAME/snapshots/REV/``), ``HF_HUB_OFFLINE=1``, the
safetensors file before a pickled one, timm's adaptation of the input convolution to
grey (``in_chans=1``), the classifier dropped (``num_classes=0``) and, for a ViT, the
position embedding resampled to ``img_size``.

Offline without a cached copy, the error says how to fetch the file elsewhere and pass it
as a local file. cfer's own models (:data:`cfer.models.CFER_MODELS`) have no hub weights:
asking for them is refused with a message naming ``cfer pretrain`` and ``weights=FILE``.

Example:
    >>> is_hub_weights("hf-hub:timm/resnet18.a1_in1k"), is_hub_weights("resnet18.a1_in1k")
    (True, True)
    >>> is_hub_weights("encoder.pt")
    False
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["HUB_PREFIX", "HubWeightsError", "is_hub_weights", "create_hub_model", "hub_repo"]

logger = logging.getLogger(__name__)

HUB_PREFIX = "hf-hub:"
"""How a Hugging Face hub repository is named in ``weights`` / ``--weights`` (``hf-hub:ORG/NAME[@REV]``)."""


class HubWeightsError(ValueError):
    """Hub weights that cannot be had (offline without a cached copy, no such repository or
    tag); the message says how to fetch them and pass them as a local file."""


def _is_tag(text: str) -> bool:
    """Whether ``text`` is a timm pretrained tag (``"resnet50.a1_in1k"``) rather than a file."""
    import timm

    if "." not in text or "/" in text or os.sep in text or Path(text).exists():
        return False
    arch, tag = text.split(".", 1)
    return bool(tag) and timm.is_model(arch) and text in timm.list_pretrained(f"{arch}.*")


def is_hub_weights(weights: object) -> bool:
    """Whether ``weights`` names hub weights (``"hf-hub:ORG/NAME"`` or a timm tag), not a local file."""
    return isinstance(weights, str) and (weights.startswith(HUB_PREFIX) or _is_tag(weights))


def hub_repo(name: str, *, weights: str | None = None) -> str | None:
    """The hub repository timm would read for ``name`` (and ``weights``), or None if it names none."""
    import timm

    if weights is not None and weights.startswith(HUB_PREFIX):
        return weights[len(HUB_PREFIX):]
    spec = weights or name
    if spec.startswith(HUB_PREFIX):
        return spec[len(HUB_PREFIX):]
    cfg = timm.models.get_pretrained_cfg(spec)
    return getattr(cfg, "hf_hub_id", None) or None


def _offline_error(repo: str | None, spec: str, exc: BaseException) -> HubWeightsError:
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    why = ("HF_HUB_OFFLINE=1 is set and there is no cached copy" if offline
           else "there is no cached copy and the hub could not be reached")
    where = f"{constants.HF_HUB_CACHE}"
    if repo is None:
        return HubWeightsError(
            f"cannot load pretrained weights for {spec!r}: {why} ({type(exc).__name__}: {str(exc)[:200]}). "
            "Fetch the weights on a machine with internet and pass the file: weights=FILE (--weights FILE)")
    repo_id = repo.split("@")[0]
    return HubWeightsError(
        f"cannot load the hub weights {repo!r} for {spec!r}: {why} in {where} "
        f"({type(exc).__name__}). On a machine with internet run `hf download {repo_id} model.safetensors "
        f"--local-dir DIR` (or `huggingface-cli download ...`), then either copy that machine's Hugging Face cache "
        f"(~/.cache/huggingface/hub) to {where} (set HF_HOME to use another place), or pass the file as a local "
        f"file: weights='DIR/model.safetensors' (cfer run --weights DIR/model.safetensors)")


def create_hub_model(name: str, *, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(..., pretrained=True)`` for ``name``, from the hub or its cache.

    Args:
        name: A timm name (``"resnet18"``), a name with a tag (``"resnet50.a1_in1k"``) or a
            hub repository (``"hf-hub:ORG/NAME"``, whose ``config.json`` names the architecture).
        weights: Optional other weights for ``name``'s architecture: ``"hf-hub:ORG/NAME[@REV]"``
            (timm's ``pretrained_cfg_overlay=dict(hf_hub_id=...)``) or a timm tag of the
            same architecture (``"resnet50.a1_in1k"``).
        **kwargs: Passed on to ``timm.create_model`` (``num_classes``, ``in_chans``, ``img_size``, ...).

    Returns:
        The model with the hub weights loaded (input convolution adapted to ``in_chans``,
        a classifier of another width left at initialisation).

    Raises:
        ValueError: For cfer's own models (no hub weights), a tag of another
            architecture, or a repository whose tensors do not fit.
        HubWeightsError: Offline without a cached copy, or no such repository / file.

    Example:
        >>> net = create_hub_model("resnet18", num_classes=0, in_chans=1)   # doctest: +SKIP
    """
    import timm
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled

    from cfer.models.backbones import CFER_MODELS

    arch = name.split(".")[0]
    if arch in CFER_MODELS:
        raise ValueError(f"{arch!r} is one of cfer's own models and has no hub weights: drop pretrained=True and "
                         "pass weights=FILE (--weights FILE), e.g. an encoder.pt that `cfer pretrain` wrote")
    args = dict(kwargs, pretrained=True)
    model_name = name
    if weights is not None and weights.startswith(HUB_PREFIX):
        repo = weights[len(HUB_PREFIX):]
        if not repo or repo.count("/") != 1:
            raise ValueError(f"hub weights must be 'hf-hub:ORG/NAME' (optionally '@REVISION'), got {weights!r}")
        args["pretrained_cfg_overlay"] = dict(hf_hub_id=repo, url="", file="")
    elif weights is not None:
        if (other := weights.split(".")[0]) != arch:
            raise ValueError(f"weights {weights!r} are a timm tag of {other!r}, not of {arch!r}: give --arch "
                             f"{other}, or weights of {arch} ({timm.list_pretrained(arch + '.*')[:4]})")
        model_name = weights
    repo = hub_repo(name, weights=weights)
    try:
        return timm.create_model(model_name, **args)
    except (EntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, ConnectionError, TimeoutError) as exc:
        raise _offline_error(repo, weights or name, exc) from None
    except RuntimeError as exc:
        if "No pretrained weights exist" in str(exc):
            raise ValueError(f"timm has no pretrained weights for {model_name!r}: pick a tag from "
                             f"timm.list_pretrained('{arch}.*') (e.g. {timm.list_pretrained(arch + '.*')[:3]}), or "
                             "pass weights='hf-hub:ORG/NAME' or a local file") from None
        if "size mismatch" in str(exc) or "Missing key" in str(exc) or "Unexpected key" in str(exc):
            raise ValueError(f"the weights of {weights or name!r} do not fit {arch!r}: was that repository saved from "
                             f"another architecture? ({str(exc).splitlines()[0][:200]})") from None
        raise
