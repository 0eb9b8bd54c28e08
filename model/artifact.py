"""Save and verify versioned model artifact folders (an .npz of arrays + metadata.json)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from model.datasets import LABELS, sha256_file
from model.errors import ArtifactError, ArtifactVersionError
from model.features import FEATURES_VERSION
from model.text import NORMALISER_VERSION

MODEL_FILE = "model.npz"
METADATA_FILE = "metadata.json"
# 2: plain numpy arrays in an .npz (format 1 was a skops file of scikit-learn objects).
FORMAT_VERSION = 2
BUNDLE_KEYS = frozenset(
    {
        "idf",
        "lexicon",
        *(f"{label}_{part}" for label in LABELS for part in ("coef", "intercept", "calibration")),
    }
)
# Array kinds an artifact may hold: floats and strings. np.load(allow_pickle=False) already
# refuses object arrays (the only kind that can carry code); this also rejects anything odd.
_ALLOWED_KINDS = frozenset("fU")


def library_versions() -> dict[str, str]:
    """Return the versions of the libraries that trained an artifact."""
    import numpy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
    }


def _installed_scikit_learn() -> str | None:
    """Return the installed scikit-learn version without importing it (importing takes ~1 s)."""
    try:
        return importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        return None


def save_artifact(folder: Path, bundle: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write ``bundle`` and ``metadata`` into a new artifact folder and return it."""
    if set(bundle) != BUNDLE_KEYS:
        raise ArtifactError(f"bundle must hold exactly {sorted(BUNDLE_KEYS)}")
    arrays = {name: np.asarray(value) for name, value in bundle.items()}
    odd = sorted(n for n, a in arrays.items() if a.dtype.kind not in _ALLOWED_KINDS)
    if odd:
        raise ArtifactError(f"bundle arrays must hold floats or strings, not: {odd}")
    folder.mkdir(parents=True, exist_ok=False)
    model_path = folder / MODEL_FILE
    with model_path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]  # numpy stub: kwds
    full = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "normaliser_version": NORMALISER_VERSION,
        "features_version": FEATURES_VERSION,
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
    """Check format, hashes and library versions of an artifact folder; return its metadata."""
    metadata = read_metadata(folder)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ArtifactVersionError(
            f"{folder}: artifact format v{metadata.get('format_version')} is not the code's "
            f"v{FORMAT_VERSION}; retrain the model (or seed the bundled default)"
        )
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
    # Scoring no longer runs scikit-learn code, but retraining and the recorded metrics do:
    # a different scikit-learn means a different model than the one these numbers describe.
    trained_with = metadata.get("libraries", {}).get("scikit-learn")
    installed = _installed_scikit_learn()
    if trained_with != installed:
        raise ArtifactVersionError(
            f"{folder}: trained with scikit-learn {trained_with}, running {installed}; "
            "retrain the model or install the matching scikit-learn"
        )
    if metadata.get("normaliser_version") != NORMALISER_VERSION:
        raise ArtifactVersionError(
            f"{folder}: text normaliser v{metadata.get('normaliser_version')} differs from the "
            f"code's v{NORMALISER_VERSION}; retrain the model"
        )
    if metadata.get("features_version") != FEATURES_VERSION:
        raise ArtifactVersionError(
            f"{folder}: n-gram features v{metadata.get('features_version')} differ from the "
            f"code's v{FEATURES_VERSION}; retrain the model"
        )
    return metadata


def load_artifact(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify and load an artifact folder; return ``(bundle, metadata)``.

    The model file is an .npz of plain arrays read with ``allow_pickle=False``: nothing is
    unpickled, and its SHA-256 was checked against the metadata first.
    """
    metadata = verify_artifact(folder)
    model_path = folder / MODEL_FILE
    try:
        with np.load(model_path, allow_pickle=False) as archive:
            bundle = {name: archive[name] for name in archive.files}
    except ValueError as exc:  # numpy refuses object (pickled) arrays with ValueError
        raise ArtifactError(f"{model_path}: refuses untrusted content ({exc})") from exc
    except Exception as exc:  # a damaged zip raises many types; all mean the same
        raise ArtifactError(f"{model_path}: cannot load ({type(exc).__name__}: {exc})") from exc
    if set(bundle) != BUNDLE_KEYS:
        raise ArtifactError(f"{model_path}: unexpected contents {sorted(bundle)}")
    odd = sorted(n for n, a in bundle.items() if a.dtype.kind not in _ALLOWED_KINDS)
    if odd:
        raise ArtifactError(f"{model_path}: refuses untrusted array types in {odd}")
    return bundle, metadata
