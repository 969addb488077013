"""The packed clip layout, where the data package reads it: see :mod:`cfer.cliplayout`.

It lives in the base layer because both the clip readers (``cfer.data.video``) and the
temporal models (``cfer.models.temporal``) use it, and models may not import data.
"""

from cfer.cliplayout import ClipLayout, ClipParts, ClipSource, RawClip

__all__ = ["ClipLayout", "ClipParts", "ClipSource", "RawClip"]
