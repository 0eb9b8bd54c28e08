"""Exceptions raised by the model package."""


class ArtifactError(Exception):
    """Refuse a model artifact that is missing, corrupted, tampered with or incompatible."""


class ArtifactVersionError(ArtifactError):
    """Refuse an artifact written by a different scikit-learn (or feature code) version."""


class DataError(Exception):
    """Refuse training data that cannot be parsed or holds no usable rows."""
