"""The features before the classifier: one definition for every part of cfer.

Distillation, the few-shot episodes, iCaRL's feature extractor and herding all read a
model's pre-logit features through :func:`pre_logits`: the timm feature API
(``forward_features`` then ``forward_head(..., pre_logits=True)``) where the model has
it, otherwise the input of its classifier, caught by a forward hook during an ordinary
``model(x)``. So any ``nn.Module`` works: a timm or cfer model, a torchvision ResNet, or
a user's own network with a final ``nn.Linear``.

:func:`find_feature_layer` names the module whose input (or output) are the features:

1. ``feature_layer=`` if given (a dotted name from ``model.named_modules()``);
2. a ``pre_logits`` module, read at its output (cfer's
   :class:`~cfer.continual.growing.GrowingClassifier`);
3. timm's ``model.get_classifier()``, read at its input;
4. the last ``nn.Linear`` the model registers, read at its input (an Avalanche
   ``IncrementalClassifier`` head holds it as ``.classifier``).

:class:`FeatureTap` keeps what that module sees in every forward pass (flattened to
``(B, features)``), so a training loop gets the features of the very forward that made
the logits, without a second pass.

Example:
    >>> import torch, timm, cfer.models
    >>> net = timm.create_model("cfer_tiny", num_classes=7)
    >>> pre_logits(net, torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 16])
    >>> mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    >>> find_feature_layer(mlp), pre_logits(mlp, torch.rand(2, 3, 2, 2)).shape
    (('3', 'input'), torch.Size([2, 5]))
"""

from __future__ import annotations

import difflib
from typing import Literal

import torch
from torch import nn

__all__ = ["FeatureTap", "find_feature_layer", "pre_logits", "probe_features"]

FeatureSide = Literal["input", "output"]

_FIX = ("pass feature_layer='<name>' (a module of [n for n, _ in model.named_modules()] whose input "
        "are the features, or whose output with feature_from='output')")


def _check_side(side: str) -> None:
    if side not in ("input", "output"):
        raise ValueError(f"feature_from must be 'input' or 'output', got {side!r}")


def find_feature_layer(model: nn.Module, *, feature_layer: str | None = None,
                       feature_from: FeatureSide = "input") -> tuple[str, FeatureSide]:
    """The module whose input (or output) are ``model``'s pre-logit features, by name.

    Args:
        model: Any classifier.
        feature_layer: A dotted module name; default: found as the module docstring says.
        feature_from: Which side of ``feature_layer`` holds the features.

    Returns:
        ``(name, "input" | "output")``.

    Raises:
        ValueError: If ``feature_layer`` is not in the model, or no classifier is found
            (the message says to pass ``feature_layer=``).
    """
    _check_side(feature_from)
    names = dict(model.named_modules())
    if feature_layer is not None:
        if feature_layer not in names or feature_layer == "":
            close = difflib.get_close_matches(feature_layer, [n for n in names if n], n=5, cutoff=0.4)
            raise ValueError(f"feature_layer {feature_layer!r} is not a module of {type(model).__name__}; "
                             f"names that look close: {close}; see [n for n, _ in model.named_modules()]")
        return feature_layer, feature_from
    if isinstance(getattr(model, "pre_logits", None), nn.Module):
        return "pre_logits", "output"
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        head = head[0] if isinstance(head, (tuple, list)) and head else head
        found = [n for n, m in names.items() if m is head and n]
        if found:
            return found[0], "input"
    linears = [n for n, m in names.items() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1], "input"
    raise ValueError(f"cannot find the classifier of {type(model).__name__} (no get_classifier(), no nn.Linear); "
                     + _FIX)


class FeatureTap:
    """Keeps the features one module of a model sees (its input) or makes (its output).

    A forward hook: each forward pass through the model overwrites :attr:`features`
    (``(B, ...)`` flattened to ``(B, features)``, still attached to the autograd graph).
    Use it as a context manager, or call :meth:`remove`.

    Args:
        model: The model.
        layer: Dotted module name (e.g. from :func:`find_feature_layer`).
        side: ``"input"`` or ``"output"``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        >>> with FeatureTap(net, layer="1") as tap:
        ...     logits = net(torch.rand(5, 4))
        >>> tap.features.shape
        torch.Size([5, 3])
    """

    def __init__(self, model: nn.Module, *, layer: str, side: FeatureSide = "input") -> None:
        _check_side(side)
        self.layer, self.side = layer, side
        self.module = model.get_submodule(layer)
        self.features: torch.Tensor | None = None
        self.output: object = None
        self._handle = self.module.register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, inputs: tuple, output: object) -> None:
        t = inputs[0] if self.side == "input" and inputs else output
        if isinstance(t, (tuple, list)) and t:
            t = t[0]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"the {self.side} of module {self.layer!r} is a {type(t).__name__}, not a tensor; "
                            + _FIX)
        self.features = t.flatten(1) if t.ndim > 2 else t
        self.output = output

    def clear(self) -> None:
        """Forget the last features (so stale ones are never read)."""
        self.features, self.output = None, None

    def remove(self) -> None:
        """Release the hook."""
        self._handle.remove()
        self.clear()

    def __enter__(self) -> "FeatureTap":
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


@torch.no_grad()
def probe_features(model: nn.Module, x: torch.Tensor, *, layer: str, side: FeatureSide = "input",
                   check_classifier: bool = False) -> torch.Tensor:
    """The features at ``layer`` for a probe batch ``x`` (eval mode, no gradients; the
    model's mode is restored), checking that the layer runs in the forward pass.

    Args:
        model: The model.
        x: A small batch.
        layer: Dotted module name.
        side: ``"input"`` or ``"output"``.
        check_classifier: Also check that an ``nn.Linear`` read at its input gives as many
            outputs as the model (it is the classifier, not a layer inside the network):
            what an automatically found layer must pass.

    Raises:
        ValueError: If the layer does not run in ``model(x)``, or is not the classifier
            (the message says to pass ``feature_layer=``).
    """
    was = model.training
    model.eval()
    try:
        with FeatureTap(model, layer=layer, side=side) as tap:
            logits = model(x)
    finally:
        model.train(was)
    if tap.features is None:
        raise ValueError(f"module {layer!r} of {type(model).__name__} does not run in its forward pass; " + _FIX)
    width = logits.shape[-1] if isinstance(logits, torch.Tensor) else None
    module = tap.module
    if check_classifier and side == "input" and isinstance(module, nn.Linear) and width != module.out_features:
        raise ValueError(f"the last nn.Linear of {type(model).__name__}, {layer!r}, gives {module.out_features} "
                         f"outputs but the model gives {width}: it is not the classifier; " + _FIX)
    return tap.features


def pre_logits(model: nn.Module, x: torch.Tensor, *, feature_layer: str | None = None,
               feature_from: FeatureSide = "input") -> torch.Tensor:
    """The features before the classifier of any model, ``(B, features)``.

    ``model.forward_head(model.forward_features(x), pre_logits=True)`` for timm and cfer
    models (when no ``feature_layer`` is given); otherwise one ``model(x)`` with a
    :class:`FeatureTap` on :func:`find_feature_layer`'s module.

    Raises:
        ValueError: If no classifier is found (pass ``feature_layer=``).
    """
    if feature_layer is None and hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    layer, side = find_feature_layer(model, feature_layer=feature_layer, feature_from=feature_from)
    with FeatureTap(model, layer=layer, side=side) as tap:
        model(x)
    if tap.features is None:
        raise ValueError(f"module {layer!r} of {type(model).__name__} does not run in its forward pass; " + _FIX)
    return tap.features
