"""Save and verify versioned model artifact folders (an .npz of arrays + metadata.json)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import platform
import re
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
# SHA-256 of the metadata itself (every key but this one, in canonical JSON). Artifacts saved
# before it existed lack it and still load; when present it must match, so a hand-edited
# threshold or config is refused like a modified model file.
METADATA_HASH_KEY = "metadata_sha256"
THRESHOLD_KEYS = frozenset({"spam_reject", "spam_hold", "toxic_hold"})
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# training_data.moderator_label_keys: 16-hex-digit fingerprints (model/evaluation_sets.py).
_LABEL_KEY_RE = re.compile(r"[0-9a-f]{16}")
# Version names become folder names and the one line of the registry's LIVE file.
_VERSION_RE = re.compile(r"[^\s./\\\x00-\x1f\x7f][^\s/\\\x00-\x1f\x7f]{0,199}")
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


def is_valid_version(name: str) -> bool:
    """Return whether ``name`` can name a version: a plain folder name on one line."""
    return _VERSION_RE.fullmatch(name) is not None


def metadata_digest(metadata: dict[str, Any]) -> str:
    """Return the SHA-256 of ``metadata`` without its own hash, in canonical JSON."""
    body = {k: v for k, v in metadata.items() if k != METADATA_HASH_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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
    thresholds = full.get("thresholds")
    if isinstance(thresholds, dict) and _is_number(thresholds.get("spam_hold")):
        # Loose goals on very separable data can put the hold cut above the reject cut. Spam
        # at or above spam_reject is rejected before spam_hold is looked at, so capping it
        # there changes no decision and keeps the invariant loading checks.
        reject = thresholds.get("spam_reject")
        if _is_number(reject) and thresholds["spam_hold"] > reject:
            full["thresholds"] = {**thresholds, "spam_hold": reject}
    full[METADATA_HASH_KEY] = metadata_digest(full)
    validate_metadata(folder, full)  # never write an artifact that loading would refuse
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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _ngram_range(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(_positive_int(v) for v in value)
        and value[0] <= value[1]
    )


def metadata_problems(metadata: dict[str, Any]) -> list[str]:
    """Return every way ``metadata`` (of the current format) is malformed; empty if none."""
    problems: list[str] = []
    version = metadata.get("version")
    if not isinstance(version, str) or not is_valid_version(version):
        problems.append(f"version {version!r} is not a valid version name")
    if not isinstance(metadata.get("created_at"), str):
        problems.append("created_at must be a string")
    files = metadata.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        problems.append(f"files must map {MODEL_FILE} (and only plain file names) to SHA-256s")
    else:
        for name, digest in files.items():
            if name != MODEL_FILE:
                problems.append(f"files lists {name!r}, which an artifact does not hold")
            elif not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
                problems.append(f"files[{name!r}] must be a hex SHA-256 string")
    libraries = metadata.get("libraries")
    if not isinstance(libraries, dict) or not all(isinstance(v, str) for v in libraries.values()):
        problems.append("libraries must map library names to version strings")
    elif "scikit-learn" not in libraries:
        problems.append("libraries lacks scikit-learn")
    digest = metadata.get(METADATA_HASH_KEY, "")
    if not isinstance(digest, str) or (digest and not _SHA256_RE.fullmatch(digest)):
        problems.append(f"{METADATA_HASH_KEY} must be a hex SHA-256 string")
    training_data = metadata.get("training_data")
    label_keys = (
        training_data.get("moderator_label_keys", []) if isinstance(training_data, dict) else []
    )
    if not isinstance(label_keys, list) or not all(
        isinstance(k, str) and _LABEL_KEY_RE.fullmatch(k) for k in label_keys
    ):
        problems.append("training_data.moderator_label_keys must be a list of 16-hex-digit strings")
    problems.extend(_threshold_problems(metadata.get("thresholds")))
    config = metadata.get("config")
    if not isinstance(config, dict):
        problems.append("config must be an object")
    else:
        for key in ("word_features", "char_features"):
            if not _positive_int(config.get(key)):
                problems.append(f"config.{key} must be a positive integer")
        for key in ("word_ngrams", "char_ngrams"):
            if not _ngram_range(config.get(key)):
                problems.append(f"config.{key} must be [low, high] positive integers")
    metrics = metadata.get("metrics", {})
    validation = metrics.get("validation", {}) if isinstance(metrics, dict) else None
    if not isinstance(validation, dict) or not all(
        isinstance(v, dict)
        and isinstance(v.get("overall", {}), dict)
        and (v.get("overall", {}).get("roc_auc") is None or _is_number(v["overall"]["roc_auc"]))
        for v in validation.values()
    ):
        problems.append("metrics.validation must map labels to {overall: {roc_auc: number}}")
    return problems


def _threshold_problems(thresholds: object) -> list[str]:
    if not isinstance(thresholds, dict) or set(thresholds) != THRESHOLD_KEYS:
        return [f"thresholds must hold exactly {sorted(THRESHOLD_KEYS)}"]
    problems = [
        f"thresholds.{name} must be a number from 0 to 1, not {value!r}"
        for name, value in sorted(thresholds.items())
        if not _is_number(value) or not math.isfinite(value) or not 0.0 <= value <= 1.0
    ]
    if problems:
        return problems
    if thresholds["spam_reject"] <= 0.0:
        problems.append("thresholds.spam_reject must be above 0 (0 rejects every comment)")
    if thresholds["spam_hold"] > thresholds["spam_reject"]:
        problems.append("thresholds.spam_hold must not exceed thresholds.spam_reject")
    return problems


def validate_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    """Refuse malformed metadata of the current format, naming every problem at once."""
    problems = metadata_problems(metadata)
    if problems:
        raise ArtifactError(f"{folder}: malformed {METADATA_FILE}: " + "; ".join(problems))


def verify_artifact(folder: Path) -> dict[str, Any]:
    """Check format, hashes and library versions of an artifact folder; return its metadata."""
    metadata = read_metadata(folder)
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ArtifactVersionError(
            f"{folder}: artifact format v{metadata.get('format_version')} is not the code's "
            f"v{FORMAT_VERSION}; retrain the model (or seed the bundled default)"
        )
    validate_metadata(folder, metadata)
    recorded = metadata.get(METADATA_HASH_KEY)
    if recorded is not None and recorded != metadata_digest(metadata):
        raise ArtifactError(
            f"{folder / METADATA_FILE}: SHA-256 mismatch; the metadata (thresholds, config, "
            "file hashes) was modified after training"
        )
    for name, expected in metadata["files"].items():
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
    trained_with = metadata["libraries"]["scikit-learn"]
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
