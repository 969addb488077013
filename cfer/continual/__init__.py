"""Continual learning: the basic → compound stream, the growing classifier, the teacher,
cfer's Avalanche plugins, the baselines, metrics and a resumable runner.

The names below are imported on first use (they import Avalanche, a few seconds);
``import cfer.continual`` itself is instant.

Example:
    >>> from cfer.continual import STRATEGIES
    >>> STRATEGIES[0]
    'cfer'
"""

from __future__ import annotations

from cfer.lazy import lazy_attributes

_NAMES = {
    "CompoundStream": "stream", "compound_orders": "stream", "make_stream": "stream", "synthetic_stream": "stream",
    "GrowingClassifier": "growing", "GrowingEnsemble": "growing", "build_model": "growing", "load_model": "growing",
    "TeacherConfig": "teacher", "TeacherResult": "teacher", "train_teacher": "teacher", "evaluate": "teacher",
    "evaluate_classes": "teacher",
    "STRATEGIES": "factory", "CferConfig": "factory", "make_strategy": "factory",
    "PRESETS": "presets", "preset_config": "presets",
    "ContinualResults": "metrics", "make_evaluator": "metrics", "experience_accuracies": "metrics",
    "run_stream": "runner",
    "Confusion": "confusion", "confusion": "confusion", "constituent_share": "confusion",
    "ClassScores": "scores", "class_scores": "scores",
    "run_order": "resume", "seed_everything": "resume",
}

__all__ = sorted(_NAMES)

__getattr__ = lazy_attributes("cfer.continual", _NAMES)
