"""cfer's synthetic FACS faces: the embedded data set of every demo and test.

Example:
    >>> from cfer.data.synthetic import render_faces
    >>> faces = render_faces(classes="basic", n_subjects=2, per_class=1, seed=3)
    >>> faces.classes[:2], len(faces)
    (('happy', 'sad'), 12)
"""

from cfer.data.synthetic.dataset import SyntheticFaces, make_synthetic_splits, render_faces
from cfer.data.synthetic.renderer import FaceRenderer, SynthConfig

__all__ = ["FaceRenderer", "SynthConfig", "SyntheticFaces", "make_synthetic_splits", "render_faces"]
