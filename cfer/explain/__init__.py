"""Explanations: Grad-CAM maps, facial-region attention, basic vs compound comparisons, figures.

Importing the submodules imports pytorch-grad-cam and matplotlib; ``import cfer`` does not.
"""
