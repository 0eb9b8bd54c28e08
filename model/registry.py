"""A directory of model versions with an atomically replaced live pointer."""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.artifact import is_valid_version, load_artifact, read_metadata, verify_artifact
from model.errors import ArtifactError, ArtifactVersionError
from model.scoring import Classifier

if TYPE_CHECKING:
    from model.evaluation_sets import Comparison

LIVE_FILE = "LIVE"
HISTORY_FILE = "history.json"
EVALUATION_FILE = "evaluation.jsonl"
VERSIONS_DIR = "versions"
# A candidate may trail the live model by this much ROC-AUC (noise between runs) and still win.
PROMOTE_TOLERANCE = 0.005

_cache: dict[str, Classifier] = {}
_cache_lock = threading.Lock()


class RegistryError(Exception):
    """Refuse a registry operation (unknown version, nothing to roll back to, ...)."""


class PromotionRefused(RegistryError):
    """Refuse to promote a candidate that scores worse than the live model."""


@dataclass(frozen=True)
class Rollback:
    """The version a rollback made live, and the newer history entries it had to skip."""

    version: str
    skipped: tuple[tuple[str, str], ...] = ()  # (version, why it cannot load)


def bundled_artifacts_dir() -> Path:
    """Return model/artifacts inside the installed package (the committed default model)."""
    return Path(__file__).resolve().parent / "artifacts"


def load_classifier(folder: Path) -> Classifier:
    """Verify and load an artifact folder, once per process per folder and version."""
    key = str(folder.resolve())
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        bundle, metadata = load_artifact(folder)
        classifier = Classifier(bundle, metadata)
        _cache[key] = classifier
        return classifier


def newest_artifact(folder: Path) -> Path:
    """Return the most recently created artifact folder directly under ``folder``."""
    found: list[tuple[str, Path]] = []
    for child in folder.iterdir() if folder.is_dir() else ():
        if (child / "metadata.json").is_file():
            found.append((str(read_metadata(child).get("created_at", "")), child))
    if not found:
        raise ArtifactError(f"no model artifact under {folder}")
    return max(found)[1]


def _dig(data: object, *keys: str) -> object:
    """Return ``data[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _auc(metadata: dict[str, Any], label: str) -> float | None:
    value = _dig(metadata, "metrics", "validation", label, "overall", "roc_auc")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class ModelRegistry:
    """Model versions under ``root/versions/<version>`` and a ``root/LIVE`` pointer file."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        """Folder holding one sub-folder per version."""
        return self.root / VERSIONS_DIR

    def version_dir(self, version: str) -> Path:
        """Return the folder of ``version`` (refusing names that escape the registry)."""
        if not is_valid_version(version):
            raise RegistryError(f"invalid version name {version!r}")
        return self.versions_dir / version

    def exists(self) -> bool:
        """Return whether ``root`` holds a registry (a live pointer or a versions folder)."""
        return (self.root / LIVE_FILE).exists() or self.versions_dir.is_dir()

    def _require_existing(self) -> None:
        # A mistyped --registry must not quietly create an empty registry somewhere.
        if not self.exists():
            raise RegistryError(f"no model registry at {self.root}")

    def live_version(self) -> str | None:
        """Return the live version, reading only the small pointer file."""
        try:
            text = (self.root / LIVE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None

    def load(self, version: str | None = None) -> Classifier:
        """Return a verified classifier for ``version`` (default: the live one), cached."""
        if version is None:
            version = self.live_version()
            if version is None:
                self._require_existing()
                raise RegistryError(f"{self.root}: no live model version; run ensure_seeded()")
        folder = self.version_dir(version)
        if not folder.is_dir():
            raise RegistryError(f"{self.root}: unknown version {version}")
        return load_classifier(folder)

    def add_candidate(self, folder: Path) -> str:
        """Copy a trained artifact folder in as a candidate (not live); return its version."""
        metadata = verify_artifact(folder)
        version: str = metadata["version"]
        target = self.version_dir(version)
        if target.exists():
            if (target / "metadata.json").read_bytes() == (folder / "metadata.json").read_bytes():
                return version
            raise RegistryError(f"{self.root}: a different artifact {version} already exists")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.versions_dir))
        try:
            shutil.copytree(folder, staging, dirs_exist_ok=True)
            os.replace(staging, target)  # readers never see a half-copied version
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not target.exists():
                raise
        return version

    def ensure_seeded(self, source: Path | None = None) -> str:
        """Make the bundled default live if nothing usable is live; return the live version.

        A live version this code can no longer load (an older artifact format or feature code,
        after an upgrade) is replaced by the bundled default and kept in the history, so
        workers keep scoring; retrain on moderator labels to get its adjustments back.
        """
        with self._locked():
            live = self.live_version()
            if live is not None and not self._outdated(live):
                return live
            artifact = newest_artifact(source or bundled_artifacts_dir())
            version = self.add_candidate(artifact)
            if live is not None and live != version:
                self._write_json(HISTORY_FILE, [*self._history(), live])
            self._write_live(version)
            return version

    def _outdated(self, version: str) -> bool:
        """Return whether ``version`` was written for other model code than this."""
        try:
            verify_artifact(self.version_dir(version))
        except ArtifactVersionError:
            return True
        except ArtifactError:
            return False  # damaged, not outdated: loading reports it; never hide tampering
        return False

    def promote(self, version: str, *, force: bool = False) -> Comparison | None:
        """Make ``version`` live, refusing one worse than the live model unless ``force``.

        Return the comparison it passed, or None when none was made (forced, nothing live, or
        already live).
        """
        self._require_existing()
        with self._locked():
            candidate = self.load(version)
            live = self.live_version()
            if live == version:
                return None
            comparison = None
            if live is not None and not force:
                try:
                    current = self.load(live)
                except (ArtifactError, RegistryError) as exc:
                    raise PromotionRefused(
                        f"live version {live} cannot be loaded, so {version} cannot be compared "
                        f"with it ({exc})"
                    ) from exc
                comparison = self._check_not_worse(candidate, current)
            history = self._history()
            if live is not None:
                history.append(live)
            self._write_json(HISTORY_FILE, history)
            self._write_live(version)
            return comparison

    def rollback(self) -> Rollback:
        """Make the most recent previously live version that still loads live again.

        Entries that cannot load (missing, damaged, or outdated after an upgrade) are skipped
        and dropped from the history; if none loads, nothing changes.
        """
        self._require_existing()
        with self._locked():
            history = self._history()
            if not history:
                raise RegistryError(f"{self.root}: no previous live version to roll back to")
            skipped: list[tuple[str, str]] = []
            while history:
                previous = history.pop()
                try:
                    self.load(previous)
                except (ArtifactError, RegistryError) as exc:
                    skipped.append((previous, str(exc)))
                    continue
                self._write_json(HISTORY_FILE, history)
                self._write_live(previous)
                return Rollback(previous, tuple(skipped))
            raise RegistryError(
                f"{self.root}: no previous live version can be loaded; the live version is "
                "unchanged. " + "; ".join(f"{version}: {why}" for version, why in skipped)
            )

    def list_versions(self) -> list[dict[str, Any]]:
        """Return one summary per stored version, oldest first, marking the live one."""
        live = self.live_version()
        out: list[dict[str, Any]] = []
        if not self.versions_dir.is_dir():
            return out
        for child in self.versions_dir.iterdir():
            if child.name.startswith(".") or not child.is_dir():
                continue
            try:
                meta = read_metadata(child)
            except ArtifactError as exc:
                out.append({"version": child.name, "live": child.name == live, "error": str(exc)})
                continue
            labels = _dig(meta, "training_data", "moderator_labels")
            out.append(
                {
                    "version": child.name,
                    "created_at": meta.get("created_at"),
                    "live": child.name == live,
                    "spam_roc_auc": _auc(meta, "spam"),
                    "toxic_roc_auc": _auc(meta, "toxic"),
                    "moderator_label_files": len(labels) if isinstance(labels, dict) else 0,
                }
            )
        return sorted(out, key=lambda d: (str(d.get("created_at") or ""), d["version"]))

    def evaluation_file(self) -> Path:
        """Path of the optional fixed evaluation set (moderator-label JSONL format)."""
        return self.root / EVALUATION_FILE

    def compare(self, candidate: Classifier, live: Classifier) -> Comparison:
        """Return ROC-AUC per label for both models on the comparison set."""
        from model.evaluation_sets import compare_models

        return compare_models(candidate, live, self.evaluation_file())

    def _check_not_worse(self, candidate: Classifier, live: Classifier) -> Comparison:
        worse: list[str] = []
        unknown: list[str] = []
        comparison = self.compare(candidate, live)
        for label, c in comparison.labels.items():
            cand, cur, where = c["candidate"], c["live"], c["set"]
            if math.isnan(cur) and math.isfinite(cand):
                continue  # the live model has no figure to fall below
            if not math.isfinite(cand) or math.isnan(cur):
                unknown.append(f"{label}: no ROC-AUC to compare on {where}")
            elif cand < cur - PROMOTE_TOLERANCE:
                worse.append(f"{label}: candidate ROC-AUC {cand:.4f} < live {cur:.4f} on {where}")
        if worse or unknown:
            verdict = "is worse than" if worse else "cannot be compared with"
            # Say so when rows were left out: it explains a fall-back to recorded metrics.
            left_out = [comparison.left_out_note()] if comparison.left_out else []
            raise PromotionRefused(
                f"{candidate.version} {verdict} live {live.version}: "
                + "; ".join(worse + unknown + left_out)
            )
        return comparison

    def _history(self) -> list[str]:
        path = self.root / HISTORY_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
            raise RegistryError(f"{path}: unreadable history ({exc})") from exc
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise RegistryError(f"{path}: not a list of version names")
        return data

    def _write_live(self, version: str) -> None:
        self._atomic_write(LIVE_FILE, version + "\n")

    def _write_json(self, name: str, data: object) -> None:
        self._atomic_write(name, json.dumps(data, indent=1) + "\n")

    def _atomic_write(self, name: str, text: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.root / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise registry writes across processes (workers may seed concurrently)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
