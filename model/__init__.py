"""Spam and toxicity model: train, save, verify, load, score and explain (a plain library)."""

from model.errors import ArtifactError
from model.registry import ModelRegistry, bundled_artifacts_dir
from model.scoring import Classifier, Reason, Score, Thresholds

__all__ = [
    "ArtifactError",
    "Classifier",
    "ModelRegistry",
    "Reason",
    "Score",
    "Thresholds",
    "bundled_artifacts_dir",
]
