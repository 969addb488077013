"""CAM methods by name: the one list of them, and the pytorch-grad-cam class of each.

Example:
    >>> "gradcam++" in METHODS
    True
    >>> method_class("gradcam").__name__                     # doctest: +SKIP
    'GradCAM'
"""

from __future__ import annotations

__all__ = ["METHODS", "method_class"]

METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam", "eigencam", "xgradcam", "hirescam")
"""CAM methods by name (pytorch-grad-cam classes); importing this list imports nothing heavy."""


def method_class(name: str) -> type:
    """The pytorch-grad-cam class of ``name``.

    Raises:
        ValueError: For an unknown name (listing the known ones).
    """
    import pytorch_grad_cam as pgc

    classes = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "layercam": pgc.LayerCAM,
               "eigencam": pgc.EigenCAM, "xgradcam": pgc.XGradCAM, "hirescam": pgc.HiResCAM}
    if name not in classes:
        import difflib

        close = difflib.get_close_matches(str(name), METHODS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown CAM method {name!r}{hint}; choose one of {list(METHODS)}")
    return classes[name]
