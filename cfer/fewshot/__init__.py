"""Few-shot evaluation: N-way K-shot episodes over cached embeddings, and the published
one-new-class protocol scored honestly.

Episodes are drawn by learn2learn's task transforms when learn2learn is installed, else by
cfer's built-in sampler (:mod:`cfer.fewshot.sampling`); nothing here imports learn2learn
at import time.

Example:
    >>> from cfer.fewshot import EpisodeConfig
    >>> EpisodeConfig(ways=5, shots=1).queries
    10
"""

from cfer.fewshot.config import CLASSIFIERS, SAMPLERS, EpisodeConfig, FewShotResult, confidence_interval
from cfer.fewshot.episodes import (
    embed,
    evaluate_dataset,
    evaluate_embeddings,
    evaluate_model,
    finetune_episodes,
)
from cfer.fewshot.protocols import OneClassResult, one_new_class_protocol
from cfer.fewshot.sampling import LEARN2LEARN_INSTALL, sample_episodes

__all__ = [
    "CLASSIFIERS", "SAMPLERS", "EpisodeConfig", "FewShotResult", "confidence_interval", "embed",
    "evaluate_dataset", "evaluate_embeddings", "evaluate_model", "finetune_episodes", "sample_episodes",
    "LEARN2LEARN_INSTALL", "OneClassResult", "one_new_class_protocol",
]
