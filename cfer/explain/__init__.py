"""Explanations: Grad-CAM maps, facial-region attention, basic vs compound comparisons
(computation), and their figures (:mod:`cfer.explain.figures`).

Importing this package imports torch; pytorch-grad-cam is imported at the first map and
matplotlib at the first figure.

Example:
    >>> from cfer.explain import METHODS, explain
    >>> "gradcam" in METHODS
    True
"""

from cfer.explain.analysis import Analysis, analyse, cam_targets
from cfer.explain.compare import SimilarityTable, constituent_gap, correlation, mean_maps, similarity_table, top_overlap
from cfer.explain.ensemble import explain_ensemble, member_target_layers
from cfer.explain.figures import overlay, overlay_grid, region_bars, save_analysis, similarity_heatmap
from cfer.explain.gradcam import empty_maps, explain, find_target_layer, token_reshape, vit_reshape
from cfer.explain.methods import METHODS, method_class
from cfer.explain.regions import canonical_region_map, localisation_score, region_attention, shown_regions

__all__ = [
    "METHODS", "method_class", "explain", "find_target_layer", "vit_reshape", "token_reshape", "empty_maps",
    "explain_ensemble", "member_target_layers",
    "Analysis", "analyse", "cam_targets",
    "region_attention", "canonical_region_map", "localisation_score", "shown_regions", "mean_maps", "correlation",
    "top_overlap", "SimilarityTable", "similarity_table", "constituent_gap", "overlay", "overlay_grid",
    "region_bars", "similarity_heatmap", "save_analysis",
]
