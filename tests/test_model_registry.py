"""Training, artifact verification, the version registry and the model CLI (small data)."""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from model import ArtifactError, ModelRegistry
from model.artifact import METADATA_FILE, METADATA_HASH_KEY, MODEL_FILE, metadata_digest
from model.cli import cli
from model.datasets import read_olid_test, read_sms
from model.errors import ArtifactVersionError
from model.evaluation import binary_metrics
from model.evaluation_sets import eval_sets_from_rows, label_text_key, read_label_rows, score_set
from model.features import TrainConfig
from model.registry import (
    PromotionRefused,
    RegistryError,
    bundled_artifacts_dir,
    load_classifier,
    newest_artifact,
)
from model.training import train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Only the tests that train or read the public datasets need them; the artifact checks run on
# the bundled model and must not be skipped with the data.
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data folder not present")


def _require_data() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip("shared data folder not present")


MARKER = "zorblax quintessa discount portal"  # text no public dataset contains


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on at most 150 rows per dataset (seconds, not minutes)."""
    _require_data()
    out = tmp_path_factory.mktemp("small")
    result = train(SHARED_DATA, out, config=TrainConfig(max_rows_per_source=150), progress=False)
    return result.folder


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Moderator decisions in the export-labels JSONL format, all marking MARKER as spam."""
    path = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    with path.open("w") as handle:
        for i in range(5):
            handle.write(
                json.dumps(
                    {
                        "text": f"{MARKER} number {i}",
                        "spam": 1,
                        "toxic": 0,
                        "source": "moderator",
                        "comment_id": f"c{i}",
                        "decided_at": "2026-11-27T00:00:00Z",
                    }
                )
                + "\n"
            )
    return path


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    reg = ModelRegistry(tmp_path / "registry")
    reg.ensure_seeded()
    yield reg


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy" / folder.name
    shutil.copytree(folder, target)
    return target


def _edit_metadata(folder: Path, **changes: object) -> None:
    """Change top-level metadata keys, re-sealing the metadata hash if the artifact has one.

    This is what training with other code or libraries would write, so the load must judge
    the content (not just notice the edit).
    """
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta.update(changes)
    if METADATA_HASH_KEY in meta and METADATA_HASH_KEY not in changes:
        meta[METADATA_HASH_KEY] = metadata_digest(meta)
    (folder / METADATA_FILE).write_text(json.dumps(meta))


def test_trained_artifact_records_provenance(small_artifact: Path) -> None:
    """metadata.json holds versions, data hashes, row counts, metrics and thresholds."""
    meta = json.loads((small_artifact / METADATA_FILE).read_text())
    assert meta["version"] == small_artifact.name
    assert set(meta["libraries"]) == {"python", "scikit-learn", "numpy"}
    assert meta["training_data"]["files"]["sms-spam-collection/SMSSpamCollection"]
    assert meta["training_data"]["rows"]["spam/sms"]["rows"] <= 150
    assert set(meta["thresholds"]) == {"spam_reject", "spam_hold", "toxic_hold"}
    tradeoffs = meta["threshold_behaviour"]["tradeoffs"]
    held = [row["clean_held"] for row in tradeoffs["toxic_hold"]]
    assert held == sorted(held, reverse=True)  # allowing more misses holds fewer clean comments
    assert meta["config"]["max_miss_rate"] == 0.01 and meta["config"]["reject_precision"] == 0.99
    assert 0.5 < meta["metrics"]["validation"]["spam"]["overall"]["roc_auc"] <= 1.0
    assert meta["files"][MODEL_FILE] and (small_artifact / MODEL_FILE).stat().st_size < 10e6
    assert meta[METADATA_HASH_KEY] == metadata_digest(meta)


def test_tampered_model_file_is_refused(small_artifact: Path, tmp_path: Path) -> None:
    """A changed byte in model.skops fails the SHA-256 check with ArtifactError."""
    folder = _copy(small_artifact, tmp_path)
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256 mismatch"):
        load_classifier(folder)


def test_corrupt_metadata_and_missing_files_are_refused(
    small_artifact: Path, tmp_path: Path
) -> None:
    folder = _copy(small_artifact, tmp_path)
    (folder / METADATA_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable metadata"):
        load_classifier(folder)
    other = _copy(small_artifact, tmp_path / "b")
    (other / MODEL_FILE).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_classifier(other)


def test_scikit_learn_version_mismatch_fails_clearly(small_artifact: Path, tmp_path: Path) -> None:
    folder = _copy(small_artifact, tmp_path)
    libraries = json.loads((folder / METADATA_FILE).read_text())["libraries"]
    _edit_metadata(folder, libraries={**libraries, "scikit-learn": "0.24.2"})
    with pytest.raises(ArtifactVersionError, match=r"scikit-learn 0\.24\.2"):
        load_classifier(folder)


def test_an_artifact_of_older_feature_code_is_refused_clearly(
    small_artifact: Path, tmp_path: Path
) -> None:
    """Its coefficients index other hash buckets (v6 had no word trigrams): never score with it."""
    from model.features import FEATURES_VERSION

    folder = _copy(small_artifact, tmp_path)
    _edit_metadata(folder, features_version=FEATURES_VERSION - 1)
    with pytest.raises(ArtifactVersionError, match=rf"features v{FEATURES_VERSION - 1} .*retrain"):
        load_classifier(folder)


def test_pickled_arrays_in_a_rehashed_file_are_refused(
    small_artifact: Path, tmp_path: Path
) -> None:
    """Even with a matching hash, a model file holding a pickled (object) array is not loaded."""
    import numpy as np

    from model.datasets import sha256_file

    folder = _copy(small_artifact, tmp_path)
    with np.load(folder / MODEL_FILE) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["lexicon"] = np.array([SystemExit, "idiot"], dtype=object)  # unpickling runs code
    with (folder / MODEL_FILE).open("wb") as handle:
        np.savez(handle, **arrays)
    _edit_metadata(folder, files={MODEL_FILE: sha256_file(folder / MODEL_FILE)})
    with pytest.raises(ArtifactError, match="untrusted"):
        load_classifier(folder)


def _older_format_copy(artifact: Path, dest: Path) -> Path:
    """Copy an artifact and mark it format 1 (the old skops format)."""
    folder = _copy(artifact, dest)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["format_version"] = 1
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    return folder


def test_artifact_of_an_older_format_is_refused_clearly(
    small_artifact: Path, tmp_path: Path
) -> None:
    """A format-1 (skops) artifact asks for a retrain instead of failing obscurely."""
    folder = _older_format_copy(small_artifact, tmp_path)
    with pytest.raises(ArtifactVersionError, match="format v1"):
        load_classifier(folder)


def test_seeding_makes_the_bundled_model_live_once(registry: ModelRegistry) -> None:
    live = registry.live_version()
    assert live is not None
    assert registry.ensure_seeded() == live
    assert [v["version"] for v in registry.list_versions()] == [live]
    assert registry.load().version == live


def test_seeding_replaces_a_live_version_of_an_older_format(
    small_artifact: Path, tmp_path: Path
) -> None:
    """After an upgrade, a live artifact the code cannot load gives way to the bundled one."""
    old = _older_format_copy(small_artifact, tmp_path)
    registry = ModelRegistry(tmp_path / "upgraded")
    registry.add_candidate(_copy(small_artifact, tmp_path / "good"))  # adds a loadable copy…
    shutil.rmtree(registry.version_dir(small_artifact.name))
    shutil.copytree(old, registry.version_dir(small_artifact.name))  # …then makes it old
    (registry.root / "LIVE").write_text(small_artifact.name + "\n")
    live = registry.ensure_seeded()
    assert live != small_artifact.name
    assert registry.load().version == live
    assert json.loads((registry.root / "history.json").read_text()) == [small_artifact.name]


@needs_data
def test_promote_refuses_worse_candidate_unless_forced(
    registry: ModelRegistry, small_artifact: Path
) -> None:
    """On a fixed evaluation set, a tiny-data candidate loses to the bundled model."""
    sms = [r for r in read_sms(SHARED_DATA)][::10]
    rows = [{"text": r.text, "spam": r.target, "toxic": 0} for r in sms]
    rows += [{"text": r.text, "spam": 0, "toxic": r.target} for r in read_olid_test(SHARED_DATA)]
    registry.evaluation_file().write_text("".join(json.dumps(r) + "\n" for r in rows))

    live = registry.live_version()
    candidate = registry.add_candidate(small_artifact)
    with pytest.raises(PromotionRefused, match="worse than live"):
        registry.promote(candidate)
    assert registry.live_version() == live
    registry.promote(candidate, force=True)
    assert registry.live_version() == candidate
    assert registry.load().version == candidate


def test_rollback_restores_previous_live_version(
    registry: ModelRegistry, small_artifact: Path
) -> None:
    first = registry.live_version()
    candidate = registry.add_candidate(small_artifact)
    registry.promote(candidate, force=True)
    assert registry.rollback().version == first
    assert registry.live_version() == first
    with pytest.raises(RegistryError, match="no previous"):
        registry.rollback()


@needs_data
def test_moderator_labels_visibly_move_scores(
    tmp_path: Path, small_artifact: Path, labels_file: Path
) -> None:
    """Five moderator spam decisions raise the spam score of similar text markedly."""
    config = TrainConfig(max_rows_per_source=150)
    with_labels = train(
        SHARED_DATA, tmp_path, label_files=[labels_file], config=config, progress=False
    )
    before = load_classifier(small_artifact).score(f"{MARKER} today").spam
    after = load_classifier(with_labels.folder).score(f"{MARKER} today").spam
    assert after > before + 0.3
    assert with_labels.metadata["training_data"]["rows"]["spam/moderator"]["rows"] == 5


@needs_data
def test_cli_train_list_promote_score_evaluate_rollback(tmp_path: Path, labels_file: Path) -> None:
    """The CLI drives the whole life cycle of a version."""
    runner = CliRunner()
    root = tmp_path / "reg"
    assert runner.invoke(cli, ["seed", "--registry", str(root)]).exit_code == 0
    first = ModelRegistry(root).live_version()

    result = runner.invoke(
        cli,
        [
            "train",
            "--data",
            str(SHARED_DATA),
            "--labels",
            str(labels_file),
            "--out",
            str(root),
            "--max-rows-per-source",
            "150",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    version = result.output.strip().splitlines()[-1]
    assert ModelRegistry(root).live_version() == first  # training only adds a candidate

    listed = runner.invoke(cli, ["list", "--registry", str(root), "--json"])
    assert {v["version"] for v in json.loads(listed.output)} == {first, version}

    # 150 rows a dataset: worse than the bundled model, so promotion needs --force.
    refused = runner.invoke(cli, ["promote", "--registry", str(root), version])
    assert refused.exit_code != 0 and "--force" in refused.output, refused.output
    assert ModelRegistry(root).live_version() == first
    forced = runner.invoke(cli, ["promote", "--registry", str(root), version, "--force"])
    assert forced.exit_code == 0 and ModelRegistry(root).live_version() == version

    src = tmp_path / "in.csv"
    with src.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerow(["1", "WIN a free prize, text CLAIM now"])
        writer.writerow(["2", "nice write-up, thanks"])
    out = tmp_path / "out.csv"
    scored = runner.invoke(cli, ["score", "--registry", str(root), str(src), "--output", str(out)])
    assert scored.exit_code == 0, scored.output
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert all(0 <= float(r["spam"]) <= 1 and 0 <= float(r["toxic"]) <= 1 for r in rows)

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"text": "you idiot", "comment_id": "x"}) + "\n")
    scored = runner.invoke(cli, ["score", "--registry", str(root), str(jsonl)])
    assert json.loads(scored.output)["comment_id"] == "x"

    report_dir = tmp_path / "report"
    evaluated = runner.invoke(
        cli,
        [
            "evaluate",
            "--registry",
            str(root),
            "--data",
            str(SHARED_DATA),
            "--labels",
            str(labels_file),
            "--out",
            str(report_dir),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((report_dir / "report.json").read_text())
    assert "olid-test-a/toxic" in report["sets"]
    assert (report_dir / "roc_pr.png").stat().st_size > 0
    assert (report_dir / "confusion.png").stat().st_size > 0
    assert "| olid-test-a/toxic |" in (report_dir / "report.md").read_text()

    back = runner.invoke(cli, ["rollback", "--registry", str(root)])
    assert back.exit_code == 0 and ModelRegistry(root).live_version() == first


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "score", "promote", "rollback", "list", "seed"]
)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def _bundled_copy(tmp_path: Path) -> Path:
    """A copy of the committed default artifact (its metadata predates the metadata hash)."""
    return _copy(newest_artifact(bundled_artifacts_dir()), tmp_path)


def _default_thresholds(**changes: object) -> dict[str, object]:
    meta = json.loads((newest_artifact(bundled_artifacts_dir()) / METADATA_FILE).read_text())
    return {**meta["thresholds"], **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"thresholds": _default_thresholds(spam_reject=0.0)}, "spam_reject"),
        ({"thresholds": _default_thresholds(spam_hold="high")}, r"spam_hold must be a number"),
        ({"thresholds": _default_thresholds(toxic_hold=1.5)}, "toxic_hold must be a number"),
        ({"thresholds": _default_thresholds(spam_hold=0.99)}, "must not exceed"),
        ({"thresholds": {"spam_reject": 0.9}}, "thresholds must hold exactly"),
        ({"files": {MODEL_FILE: 123}}, "must be a hex SHA-256"),
        ({"files": {MODEL_FILE: "0" * 64, "../../etc/passwd": "0" * 64}}, "does not hold"),
        ({"libraries": "scikit-learn 1.9"}, "libraries must map"),
        ({"config": {"word_features": "many"}}, r"config\.word_features"),
        ({"version": "../elsewhere"}, "not a valid version name"),
        ({METADATA_HASH_KEY: 42}, "must be a hex SHA-256"),
        ({"metrics": {"validation": {"spam": {"overall": {"roc_auc": "0.9"}}}}}, "metrics"),
        ({"training_data": {"moderator_label_keys": ["not-a-key"]}}, "moderator_label_keys"),
    ],
)
def test_malformed_metadata_is_refused_with_artifact_error(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    """Bad thresholds, hashes, libraries or config fail the load clearly (not TypeError later)."""
    folder = _bundled_copy(tmp_path)
    _edit_metadata(folder, **changes)
    with pytest.raises(ArtifactError, match=message):
        load_classifier(folder)


def test_an_edited_metadata_file_fails_its_recorded_hash(
    small_artifact: Path, tmp_path: Path
) -> None:
    """New artifacts hash their metadata: a plausible but edited threshold is refused."""
    folder = _copy(small_artifact, tmp_path)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["thresholds"]["spam_reject"] = meta["thresholds"]["spam_hold"]
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=4))
    with pytest.raises(ArtifactError, match=r"metadata\.json: SHA-256 mismatch"):
        load_classifier(folder)
    # Only the content counts: the same metadata laid out differently still loads.
    other = _copy(small_artifact, tmp_path / "b")
    meta = json.loads((other / METADATA_FILE).read_text())
    (other / METADATA_FILE).write_text(json.dumps(meta, indent=None, sort_keys=False))
    assert load_classifier(other).version == small_artifact.name


def test_seeding_over_a_live_version_with_malformed_metadata_does_not_crash(
    tmp_path: Path,
) -> None:
    """ensure_seeded (run as a worker starts) meets a bad live artifact with ArtifactError only."""
    folder = _bundled_copy(tmp_path)
    registry = ModelRegistry(tmp_path / "reg")
    version = registry.add_candidate(folder)
    (registry.root / "LIVE").write_text(version + "\n")
    _edit_metadata(registry.version_dir(version), libraries=["numpy"], files={MODEL_FILE: 7})
    assert registry.ensure_seeded() == version  # damaged, not outdated: never hidden
    with pytest.raises(ArtifactError, match="libraries must map") as refused:
        registry.load()
    assert "files['model.npz'] must be a hex SHA-256" in str(refused.value)


def _outdated_live_in_history(small_artifact: Path, tmp_path: Path) -> ModelRegistry:
    """A registry where an upgrade replaced a live version this code can no longer load."""
    registry = ModelRegistry(tmp_path / "upgraded")
    registry.add_candidate(_copy(small_artifact, tmp_path / "good"))
    shutil.rmtree(registry.version_dir(small_artifact.name))
    shutil.copytree(
        _older_format_copy(small_artifact, tmp_path), registry.version_dir(small_artifact.name)
    )
    (registry.root / "LIVE").write_text(small_artifact.name + "\n")
    registry.ensure_seeded()
    assert json.loads((registry.root / "history.json").read_text()) == [small_artifact.name]
    return registry


def test_rollback_refuses_a_previous_version_that_cannot_load(
    small_artifact: Path, tmp_path: Path
) -> None:
    registry = _outdated_live_in_history(small_artifact, tmp_path)
    live = registry.live_version()
    with pytest.raises(RegistryError, match="no previous live version can be loaded") as refused:
        registry.rollback()
    assert "format v1" in str(refused.value)
    assert registry.live_version() == live
    assert json.loads((registry.root / "history.json").read_text()) == [small_artifact.name]


def test_rollback_skips_versions_that_cannot_load_and_says_so(
    small_artifact: Path, tmp_path: Path
) -> None:
    """Rolling back past an unloadable entry lands on the newest previous one that loads."""
    registry = _outdated_live_in_history(small_artifact, tmp_path)
    bundled = registry.live_version()
    newer = _copy(small_artifact, tmp_path / "newer")
    newer = newer.rename(newer.with_name("newer-version"))
    _edit_metadata(newer, version="newer-version")
    registry.add_candidate(newer)
    registry.promote("newer-version", force=True)
    # Live: newer-version; before it the outdated version, and before that the bundled one.
    (registry.root / "history.json").write_text(json.dumps([bundled, small_artifact.name]))

    result = registry.rollback()
    assert result.version == bundled and registry.live_version() == bundled
    assert [version for version, _ in result.skipped] == [small_artifact.name]
    assert "format v1" in result.skipped[0][1]
    assert json.loads((registry.root / "history.json").read_text()) == []


# --- promote never scores a model on its own training labels ----------------------------------

NOISE_WORDS = [
    "amber",
    "bolt",
    "cedar",
    "drift",
    "ember",
    "fjord",
    "gleam",
    "harbor",
    "indigo",
    "jasper",
    "kelp",
    "lumen",
]


@pytest.fixture(scope="module")
def random_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 moderator labels drawn at random: noise a model can only memorise."""
    rng = random.Random(7)  # noqa: S311  # reproducible noise, not security
    rows = [
        {
            "text": " ".join(rng.sample(NOISE_WORDS, 5)) + f" note {i}",
            "spam": rng.randint(0, 1),
            "toxic": rng.randint(0, 1),
        }
        for i in range(60)
    ]
    assert all({r[label] for r in rows} == {0, 1} for label in ("spam", "toxic"))
    path = tmp_path_factory.mktemp("noise") / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def noisy_candidate(tmp_path_factory: pytest.TempPathFactory, random_labels: Path) -> Path:
    """A small model trained on the random labels (weight 30 each)."""
    _require_data()
    out = tmp_path_factory.mktemp("noisy")
    config = TrainConfig(max_rows_per_source=150)
    return train(
        SHARED_DATA, out, label_files=[random_labels], config=config, progress=False
    ).folder


def _label_auc(labels_file: Path, registry: ModelRegistry, version: str) -> dict[str, float]:
    """ROC-AUC per label of ``version`` on a moderator-label file, every row scored."""
    classifier = registry.load(version)
    return {
        s.label: binary_metrics(s.y, score_set(classifier, s))["roc_auc"]
        for s in eval_sets_from_rows("file", read_label_rows(labels_file))
    }


def test_promote_leaves_out_evaluation_rows_the_candidate_was_trained_on(
    registry: ModelRegistry, noisy_candidate: Path, random_labels: Path, small_artifact: Path
) -> None:
    """Compared on its own random training labels, a candidate is not scored on them: the rows
    are left out (and the output says so) and both labels fall back to recorded metrics."""
    meta = json.loads((noisy_candidate / METADATA_FILE).read_text())
    texts = [json.loads(line)["text"] for line in random_labels.read_text().splitlines()]
    keys = meta["training_data"]["moderator_label_keys"]
    assert keys == sorted(label_text_key(t) for t in texts) and len(set(keys)) == 60
    assert (
        json.loads((small_artifact / METADATA_FILE).read_text())["training_data"][
            "moderator_label_keys"
        ]
        == []
    )
    shutil.copy(random_labels, registry.evaluation_file())
    live = registry.live_version()
    candidate = registry.add_candidate(noisy_candidate)  # verifies the metadata hash
    # The trap: on its own training labels the candidate looks near perfect.
    assert min(_label_auc(random_labels, registry, candidate).values()) > 0.95

    comparison = registry.compare(registry.load(candidate), registry.load())
    assert (comparison.evaluation_rows, comparison.left_out) == (60, 60)
    recorded = meta["metrics"]["validation"]
    for label in ("spam", "toxic"):
        assert comparison.labels[label]["set"] == "recorded validation metrics"
        assert comparison.labels[label]["candidate"] == recorded[label]["overall"]["roc_auc"]
    result = CliRunner().invoke(cli, ["promote", "--registry", str(registry.root), candidate])
    assert result.exit_code == 1, result.output
    assert f"{candidate} is worse than live {live}" in result.output
    assert "60 of 60 evaluation rows left out as seen in training" in result.output
    assert registry.live_version() == live


def test_promote_leaves_out_evaluation_rows_the_live_model_was_trained_on(
    registry: ModelRegistry, noisy_candidate: Path, random_labels: Path, small_artifact: Path
) -> None:
    """Neither side is scored on its training labels: the live model's count too."""
    registry.promote(registry.add_candidate(noisy_candidate), force=True)
    shutil.copy(random_labels, registry.evaluation_file())
    candidate = registry.load(registry.add_candidate(small_artifact))
    comparison = registry.compare(candidate, registry.load())
    assert (comparison.evaluation_rows, comparison.left_out) == (60, 60)
    assert {c["set"] for c in comparison.labels.values()} == {"recorded validation metrics"}


@needs_data
def test_promote_still_scores_evaluation_rows_neither_model_was_trained_on(
    registry: ModelRegistry, noisy_candidate: Path, random_labels: Path, tmp_path: Path
) -> None:
    """Only the trained-on rows are left out; the rest decide, scored as usual."""
    fresh = [{"text": r.text, "spam": r.target, "toxic": 0} for r in read_sms(SHARED_DATA)][::20]
    fresh += [{"text": r.text, "spam": 0, "toxic": r.target} for r in read_olid_test(SHARED_DATA)][
        ::10
    ]
    fresh_file = tmp_path / "fresh.jsonl"
    fresh_file.write_text("".join(json.dumps(r) + "\n" for r in fresh))
    registry.evaluation_file().write_text(random_labels.read_text() + fresh_file.read_text())
    live = registry.live_version()
    assert live is not None
    candidate = registry.add_candidate(noisy_candidate)

    comparison = registry.compare(registry.load(candidate), registry.load())
    assert (comparison.evaluation_rows, comparison.left_out) == (60 + len(fresh), 60)
    on_candidate = _label_auc(fresh_file, registry, candidate)
    on_live = _label_auc(fresh_file, registry, live)
    for label in ("spam", "toxic"):
        assert comparison.labels[label] == {
            "set": str(registry.evaluation_file()),
            "candidate": on_candidate[label],
            "live": on_live[label],
        }
