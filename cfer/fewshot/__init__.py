"""Few-shot evaluation: N-way K-shot episodes over cached embeddings, and the published
one-new-class protocol scored honestly.

Example:
    >>> from cfer.fewshot import EpisodeConfig
    >>> EpisodeConfig(ways=5, shots=1).queries
    10
"""

from cfer.fewshot.episodes import (
    CLASSIFIERS,
    EpisodeConfig,
    FewShotResult,
    confidence_interval,
    embed,
    evaluate_embeddings,
    evaluate_model,
    finetune_episodes,
    sample_episodes,
)
from cfer.fewshot.protocols import OneClassResult, one_new_class_protocol

__all__ = [
    "CLASSIFIERS", "EpisodeConfig", "FewShotResult", "confidence_interval", "embed", "evaluate_embeddings",
    "evaluate_model", "finetune_episodes", "sample_episodes", "OneClassResult", "one_new_class_protocol",
]
