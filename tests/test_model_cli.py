"""`moderation-model` on bad input: a clear one-line error and exit code, never a traceback.

Every test here builds its models from the committed default artifact (copied, sometimes
altered and re-sealed), so none of them trains.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from model import ModelRegistry
from model.artifact import METADATA_FILE, METADATA_HASH_KEY, MODEL_FILE, metadata_digest
from model.cli import cli
from model.datasets import sha256_file
from model.registry import bundled_artifacts_dir, newest_artifact
from tests.conftest import ROOT, TEST_SECRETS

BUNDLED = newest_artifact(bundled_artifacts_dir())


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_fails(result: Result, message: str, exit_code: int = 1) -> None:
    """The command failed with ``message`` for the user, not with a Python traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert message in result.output
    assert "Traceback" not in result.output


def variant(tmp_path: Path, version: str, *, negate_toxic: bool = False, **metrics: float) -> Path:
    """Copy the default artifact as ``version``, optionally altered, with valid hashes.

    ``metrics`` sets recorded out-of-fold ROC-AUCs per label (what its training measured).
    """
    folder = tmp_path / "variants" / version
    shutil.copytree(BUNDLED, folder)
    if negate_toxic:
        with np.load(folder / MODEL_FILE) as archive:
            arrays = {name: archive[name] for name in archive.files}
        arrays["toxic_coef"] = -arrays["toxic_coef"]
        with (folder / MODEL_FILE).open("wb") as handle:
            np.savez_compressed(handle, **arrays)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["version"] = version
    meta["files"] = {MODEL_FILE: sha256_file(folder / MODEL_FILE)}
    for label, auc in metrics.items():
        meta["metrics"]["validation"][label]["overall"]["roc_auc"] = auc
    meta[METADATA_HASH_KEY] = metadata_digest(meta)
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2))
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """A registry whose live version is the committed default."""
    reg = ModelRegistry(tmp_path / "reg")
    reg.ensure_seeded()
    return reg


SPAM_TEXTS = [
    "WIN a FREE iPhone now!!! click http://bit.ly/win to claim your prize",
    "Cheap followers, 1000 for $5, DM me or visit my channel",
    "URGENT: your account won $1000, text CLAIM to 80808",
    "Check out my channel for free gift cards http://free-cards.example",
]
CLEAN_TEXTS = [
    "Thanks for the clear explanation of the tax changes.",
    "I disagree with the second point, the figures look dated.",
    "Great photos, the bridge at dusk is lovely.",
    "Could you share the recipe for the bread in part two?",
]


# --- promote ----------------------------------------------------------------------------------


def test_promote_checks_a_label_the_evaluation_file_cannot_measure(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    """With no toxic positives in evaluation.jsonl, toxic falls back to the recorded metrics."""
    live_auc = json.loads((BUNDLED / METADATA_FILE).read_text())["metrics"]["validation"]
    registry.add_candidate(variant(tmp_path, "badtoxic", negate_toxic=True, toxic=0.35))
    rows = [{"text": t, "spam": 1, "toxic": 0} for t in SPAM_TEXTS]
    rows += [{"text": t, "spam": 0, "toxic": 0} for t in CLEAN_TEXTS]
    registry.evaluation_file().write_text("".join(json.dumps(r) + "\n" for r in rows))
    live = registry.live_version()

    result = run("promote", "--registry", str(registry.root), "badtoxic")
    assert_fails(result, "badtoxic is worse than live")
    toxic = live_auc["toxic"]["overall"]["roc_auc"]
    assert f"toxic: candidate ROC-AUC 0.3500 < live {toxic:.4f} on recorded validation" in (
        result.output
    )
    assert "use --force" in result.output and "force=True" not in result.output
    assert registry.live_version() == live

    forced = run("promote", "--registry", str(registry.root), "badtoxic", "--force")
    assert forced.exit_code == 0, forced.output
    assert registry.live_version() == "badtoxic"


TOXIC_TEXTS = [
    "Shut up you worthless idiot, nobody wants you here.",
    "You are a pathetic moron and everyone hates you.",
]


def test_promote_without_recorded_training_labels_scores_every_evaluation_row(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    """Artifacts that record no training-label texts (the committed default) leave no row out:
    the whole evaluation file decides, and the output says so."""
    # The default was trained without moderator labels: it records none (an empty list).
    assert not json.loads((BUNDLED / METADATA_FILE).read_text())["training_data"].get(
        "moderator_label_keys"
    )
    registry.add_candidate(variant(tmp_path, "candidate"))
    rows = [{"text": t, "spam": 1, "toxic": 0} for t in SPAM_TEXTS]
    rows += [{"text": t, "spam": 0, "toxic": 0} for t in CLEAN_TEXTS]
    rows += [{"text": t, "spam": 0, "toxic": 1} for t in TOXIC_TEXTS]
    registry.evaluation_file().write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = run("promote", "--registry", str(registry.root), "candidate")
    assert result.exit_code == 0, result.output
    assert "0 of 10 evaluation rows left out as seen in training" in result.output
    for label in ("spam", "toxic"):
        assert re.search(
            rf"{label}: candidate ROC-AUC [01]\.\d{{4}}, live [01]\.\d{{4}} on "
            + re.escape(str(registry.evaluation_file())),
            result.output,
        ), result.output
    assert result.output.endswith("live version: candidate\n")
    assert registry.live_version() == "candidate"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"text": "no labels"}\n', "evaluation.jsonl:1: not a moderator label"),
        ('{"text": "caf\xe9", "spam": 0, "toxic": 0}\n'.encode("latin-1"), "not UTF-8"),
    ],
)
def test_promote_reports_a_malformed_evaluation_file(
    registry: ModelRegistry, tmp_path: Path, content: bytes, message: str
) -> None:
    registry.add_candidate(variant(tmp_path, "candidate"))
    registry.evaluation_file().write_bytes(content)
    assert_fails(run("promote", "--registry", str(registry.root), "candidate"), message)


def test_a_corrupt_history_file_is_a_clear_error(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.add_candidate(variant(tmp_path, "candidate"))
    (registry.root / "history.json").write_text("[not json")
    message = "history.json: unreadable history"
    assert_fails(run("rollback", "--registry", str(registry.root)), message)
    assert_fails(run("promote", "--registry", str(registry.root), "candidate", "--force"), message)


@pytest.mark.parametrize(
    "args", [["promote", "some-version", "--force"], ["rollback"], ["list"], ["list", "--json"]]
)
def test_a_mistyped_registry_path_is_refused_and_not_created(
    registry: ModelRegistry, args: list[str]
) -> None:
    typo = registry.root.with_name("regsitry")
    result = run(args[0], "--registry", str(typo), *args[1:])
    assert_fails(result, f"no model registry at {typo}")
    assert not typo.exists()


# --- rollback ---------------------------------------------------------------------------------


def _add_outdated(registry: ModelRegistry, tmp_path: Path, version: str) -> None:
    """Store ``version`` as an artifact of an older format (as after an upgrade)."""
    folder = variant(tmp_path, version)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["format_version"] = 1
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    shutil.copytree(folder, registry.version_dir(version))


def test_rollback_refuses_when_no_previous_version_can_load(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    _add_outdated(registry, tmp_path, "outdated")
    (registry.root / "history.json").write_text(json.dumps(["outdated"]))
    live = registry.live_version()
    result = run("rollback", "--registry", str(registry.root))
    assert_fails(result, "no previous live version can be loaded; the live version is unchanged")
    assert "outdated: " in result.output and "format v1" in result.output
    assert registry.live_version() == live


def test_rollback_skips_a_version_that_cannot_load_and_says_so(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    first = registry.live_version()
    _add_outdated(registry, tmp_path, "outdated")
    registry.add_candidate(variant(tmp_path, "current"))
    registry.promote("current", force=True)
    (registry.root / "history.json").write_text(json.dumps([first, "outdated"]))

    result = run("rollback", "--registry", str(registry.root))
    assert result.exit_code == 0, result.output
    assert "skipped outdated, which cannot be loaded" in result.stderr
    assert result.stdout == f"live version: {first}\n"
    assert registry.live_version() == first


# --- score ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", b'{"text": "fine"}\n{not json\n', "bad.jsonl:2: not valid JSON"),
        ("row.jsonl", b'["text", "a list"]\n', "row.jsonl:1: not a JSON object"),
        ("null.jsonl", b'{"text": null}\n', "null.jsonl:1: 'text' must be a string, not null"),
        ("number.jsonl", b'{"text": 12}\n', "number.jsonl:1: 'text' must be a string, not a num"),
        ("none.jsonl", b'{"body": "hi"}\n', "none.jsonl:1: no 'text' field"),
        ("latin1.csv", "text\ncaf\xe9\n".encode("latin-1"), "latin1.csv: not UTF-8 text"),
        ("latin1.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"), "not UTF-8 text"),
        ("extra.csv", b"id,text\n1,hello,surplus\n", "extra.csv:2: more cells than the header"),
        ("short.csv", b"id,text\n1,hi\n2\n", "short.csv:3: 'text' must be a string, not miss"),
        ("huge.csv", b"text\n" + b"a" * (200 * 1024) + b"\n", "not valid CSV (field larger"),
        ("header.csv", b"id,comment\n", "header.csv: no 'text' column (the header has: id,"),
        ("empty.csv", b"", "empty.csv: empty; the first line must name the columns"),
    ],
)
def test_score_refuses_bad_input_clearly(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "scored"
    assert_fails(run("score", str(path), "--output", str(out)), message)
    assert not out.exists()


def test_score_reads_a_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Spreadsheets save UTF-8 with a BOM; the first column keeps its plain name."""
    path = tmp_path / "excel.csv"
    path.write_bytes("id,text\n1,caf\xe9 review\n".encode("utf-8-sig"))
    result = run("score", str(path))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.output.splitlines()))
    assert [(r["id"], r["text"]) for r in rows] == [("1", "caf\xe9 review")]
    assert 0.0 <= float(rows[0]["spam"]) <= 1.0


def test_score_writes_a_lone_surrogate_back_as_an_escape(tmp_path: Path) -> None:
    """JSON allows an unpaired \\ud800 escape; UTF-8 cannot hold it, so it stays escaped."""
    path = tmp_path / "odd.jsonl"
    path.write_text('{"text": "half a pair \\ud800 here", "id": "\u00e9"}\n{"text": "plain"}\n')
    result = run("score", str(path))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text"] for r in rows] == ["half a pair \ud800 here", "plain"]
    assert rows[0]["id"] == "\u00e9" and "spam" in rows[1]


# --- train / evaluate -------------------------------------------------------------------------


@pytest.fixture
def latin1_labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.jsonl"
    path.write_bytes('{"text": "caf\xe9", "spam": 0, "toxic": 0}\n'.encode("latin-1"))
    return path


def test_train_refuses_non_utf8_labels_before_training(tmp_path: Path, latin1_labels: Path) -> None:
    result = run(
        "train", "--data", str(tmp_path), "--labels", str(latin1_labels), "--out", str(tmp_path)
    )
    assert_fails(result, f"{latin1_labels}: not UTF-8 text (byte b'\\xe9')")


def test_evaluate_refuses_non_utf8_labels(tmp_path: Path, latin1_labels: Path) -> None:
    result = run("evaluate", "--labels", str(latin1_labels), "--out", str(tmp_path / "report"))
    assert_fails(result, "not UTF-8 text")


def test_train_refuses_a_taken_version_name_before_training(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    taken = registry.live_version()
    assert taken is not None
    result = run("train", "--data", str(tmp_path), "--out", str(registry.root), "--version", taken)
    assert_fails(result, "already exists", exit_code=2)
    assert "--version" in result.output


@pytest.mark.parametrize("version", ["../escaped", ".hidden", "two words", "a/b", "line\nbreak"])
def test_train_refuses_a_version_name_that_is_not_a_folder_name(
    tmp_path: Path, version: str
) -> None:
    out = tmp_path / "out"
    result = run("train", "--data", str(tmp_path), "--out", str(out), "--version", version)
    assert_fails(result, "is not a version name", exit_code=2)
    assert not out.exists() and not (tmp_path / "escaped").exists()


# --- export-labels ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_export_labels_with_redis_down_is_a_clear_error(tmp_path: Path) -> None:
    """Run as an operator would (its own process and environment)."""
    out = tmp_path / "labels.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODERATION_", "REDIS_"))}
    env |= {
        **TEST_SECRETS,
        "MODERATION_REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0",
        "MODERATION_MODEL_DIR": str(tmp_path / "models"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "workers.model_cli", "export-labels", "--out", str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Error: cannot read moderator decisions from Redis (ConnectionError" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not out.with_suffix(".jsonl.tmp").exists()
