"""Save and verify versioned model artifact folders (skops file + metadata.json)."""

from __future__ import annotations

import json
import platform
import zipfile
from pathlib import Path
from typing import Any

from model.datasets import sha256_file
from model.errors import ArtifactError, ArtifactVersionError
from model.text import NORMALISER_VERSION

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
BUNDLE_KEYS = frozenset(
    {"features", "lexicon", "spam", "toxic", "spam_calibrator", "toxic_calibrator"}
)

# The only types skops may rebuild from an artifact; anything else is refused before loading,
# so a crafted file cannot run code through a pickled callable.
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.dict",
    "builtins.list",
    "builtins.tuple",
    "builtins.slice",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
    "numpy.ndarray",
    "sklearn.feature_extraction.text.HashingVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.pipeline.Pipeline",
)


def library_versions() -> dict[str, str]:
    """Return the versions of the libraries an artifact depends on."""
    import numpy
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "skops": skops.__version__,
    }


def save_artifact(folder: Path, bundle: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write ``bundle`` and ``metadata`` into a new artifact folder and return it."""
    import skops.io as sio

    if set(bundle) != BUNDLE_KEYS:
        raise ArtifactError(f"bundle must hold exactly {sorted(BUNDLE_KEYS)}")
    folder.mkdir(parents=True, exist_ok=False)
    model_path = folder / MODEL_FILE
    sio.dump(bundle, model_path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    untrusted = set(sio.get_untrusted_types(file=model_path)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ArtifactError(f"bundle holds types outside the trusted list: {sorted(untrusted)}")
    full = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "normaliser_version": NORMALISER_VERSION,
        "libraries": library_versions(),
        "files": {MODEL_FILE: sha256_file(model_path)},
    }
    (folder / METADATA_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return folder


def read_metadata(folder: Path) -> dict[str, Any]:
    """Parse an artifact's metadata.json, refusing a missing or malformed file."""
    path = folder / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{folder}: no {METADATA_FILE}; not a model artifact") from exc
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable metadata ({exc})") from exc
    if not isinstance(metadata, dict) or not isinstance(metadata.get("version"), str):
        raise ArtifactError(f"{path}: metadata lacks a version")
    return metadata


def verify_artifact(folder: Path) -> dict[str, Any]:
    """Check hashes and library versions of an artifact folder; return its metadata."""
    import sklearn

    metadata = read_metadata(folder)
    files = metadata.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise ArtifactError(f"{folder}: metadata lists no file hashes")
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"{folder}: {name} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"{path}: SHA-256 mismatch (expected {expected[:12]}…, found {actual[:12]}…); "
                "the artifact is corrupted or was modified after training"
            )
    trained_with = metadata.get("libraries", {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        raise ArtifactVersionError(
            f"{folder}: trained with scikit-learn {trained_with}, running {sklearn.__version__}; "
            "retrain the model or install the matching scikit-learn"
        )
    if metadata.get("normaliser_version") != NORMALISER_VERSION:
        raise ArtifactVersionError(
            f"{folder}: text normaliser v{metadata.get('normaliser_version')} differs from the "
            f"code's v{NORMALISER_VERSION}; retrain the model"
        )
    return metadata


def load_artifact(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify and load an artifact folder; return ``(bundle, metadata)``."""
    import skops.io as sio

    metadata = verify_artifact(folder)
    model_path = folder / MODEL_FILE
    try:
        untrusted = set(sio.get_untrusted_types(file=model_path)) - set(TRUSTED_TYPES)
        if untrusted:
            raise ArtifactError(f"{model_path}: refuses untrusted types {sorted(untrusted)}")
        bundle = sio.load(model_path, trusted=list(TRUSTED_TYPES))
    except ArtifactError:
        raise
    except Exception as exc:  # skops raises many types on a damaged zip; all mean the same
        raise ArtifactError(f"{model_path}: cannot load ({type(exc).__name__}: {exc})") from exc
    if not isinstance(bundle, dict) or set(bundle) != BUNDLE_KEYS:
        raise ArtifactError(f"{model_path}: unexpected contents")
    return bundle, metadata
