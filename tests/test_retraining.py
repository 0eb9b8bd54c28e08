"""The loop: moderators' decisions → export-labels → train → promote → the live model changes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from service import create_app
from tests.conftest import (
    MODERATOR_TOKEN,
    ROOT,
    SHARED_DATA,
    TEST_SECRETS,
    WorkerProcess,
    wait_for,
)
from workers.embedded_redis import EmbeddedRedis
from workers.runtime import Runtime
from workers.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = {"Authorization": f"Bearer {MODERATOR_TOKEN}"}
# Friendly-sounding promotion that public spam data does not teach the model to catch.
PROMO = [
    "Fresh sourdough at Crumbs Bakery on Elm Street every morning, come say hi",
    "Crumbs Bakery on Elm Street has warm sourdough and cinnamon rolls today",
    "Stop by Crumbs Bakery Elm Street for the best sourdough in town",
    "Crumbs Bakery sourdough special on Elm Street this weekend only",
    "Our Crumbs Bakery on Elm Street just baked fresh sourdough loaves",
    "Sourdough lovers: Crumbs Bakery, Elm Street, open from 7am",
]


@pytest.fixture
def stack(
    tmp_path: Path, settings_values: dict[str, str], worker_env: dict[str, str]
) -> Iterator[tuple[Settings, dict[str, str], redis_lib.Redis]]:
    """Its own Redis, model registry and worker: promoting here must not touch other tests."""
    from model import ModelRegistry

    server = EmbeddedRedis(tmp_path / "redis").start()
    model_dir = tmp_path / "models"
    ModelRegistry(model_dir).ensure_seeded()
    values = {
        **settings_values,
        "MODERATION_REDIS_URL": server.url,
        "MODERATION_MODEL_DIR": str(model_dir),
        "MODERATION_MODEL_CHECK_SECONDS": "0.2",
    }
    env = {**worker_env, **values}
    settings = Settings.from_mapping(values).check()
    worker = WorkerProcess(env, tmp_path / "worker.log")
    client = redis_lib.Redis.from_url(server.url, decode_responses=True)
    try:
        worker.start(settings)
        yield settings, env, client
    finally:
        worker.stop()
        client.close()
        server.stop()


def run_cli(env: dict[str, str], *args: str) -> str:
    """Run `moderation-model` as an operator would; return its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "workers.model_cli", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MODERATION_")}, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_moderator_labels_retrain_and_promote_change_the_live_model(
    stack: tuple[Settings, dict[str, str], redis_lib.Redis], tmp_path: Path
) -> None:
    settings, env, redis = stack
    client = create_app(settings, configure_logs=False).test_client()

    def post_and_wait(text: str, email: str) -> dict[str, str]:
        body = {"post_id": "bakery", "comment": text, "author": "Pat", "email": email}
        comment_id = client.post("/api/v1/comments", json=body).get_json()["id"]
        wait_for(lambda: redis.hget(f"mod:c:{comment_id}", "state") == "scored", timeout=10)
        return redis.hgetall(f"mod:c:{comment_id}")

    before = [post_and_wait(text, f"pat{n}@example.com") for n, text in enumerate(PROMO)]
    old_version = before[0]["model_version"]
    ids = [record["id"] for record in before]
    response = client.post(
        "/api/v1/moderation/bulk", json={"action": "spam", "ids": ids}, headers=AUTH
    )
    assert all(r["status"] == 200 for r in response.get_json()["results"].values())

    labels = tmp_path / "labels.jsonl"
    run_cli(env, "export-labels", "--out", str(labels))
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert {r["comment_id"] for r in rows} == set(ids)
    assert all(r["spam"] == 1 and r["toxic"] == 0 for r in rows)
    assert "example.com" not in labels.read_text()
    assert labels.stat().st_mode & 0o777 == 0o600  # comment text: its owner's eyes only

    registry = str(settings.model_dir)
    out = run_cli(
        env,
        "train",
        "--data",
        str(SHARED_DATA),
        "--labels",
        str(labels),
        "--out",
        registry,
        "--max-rows-per-source",
        "400",
        "--quiet",
    )
    new_version = out.strip().splitlines()[-1]
    assert new_version != old_version
    # A candidate trained on a 400-row sample is weaker on the public evaluation set than the
    # bundled model, so promotion is refused unless forced: the operator's explicit choice.
    run_cli(env, "promote", "--registry", registry, new_version, "--force")
    assert new_version in run_cli(env, "list", "--registry", registry)

    probe = "Crumbs Bakery on Elm Street: fresh sourdough every single morning"
    after = wait_for(
        lambda: (
            (r := post_and_wait(probe, "probe@example.com"))["model_version"] == new_version and r
        ),
        timeout=15,
    )
    old_spam = max(float(r["spam"]) for r in before)
    assert float(after["spam"]) > old_spam
    assert after["model_version"] == new_version


def test_a_live_version_that_cannot_load_is_logged_and_the_current_model_keeps_scoring(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker names the version and the load error once, instead of failing batch after batch."""
    from model import ArtifactError, ModelRegistry
    from model.artifact import METADATA_HASH_KEY, metadata_digest

    model_dir = tmp_path / "models"
    registry = ModelRegistry(model_dir)
    first = registry.ensure_seeded()
    broken = registry.version_dir("broken")
    shutil.copytree(registry.version_dir(first), broken)
    meta = {**json.loads((broken / "metadata.json").read_text()), "version": "broken"}
    if METADATA_HASH_KEY in meta:  # renamed as a training run would have named it: resealed
        meta[METADATA_HASH_KEY] = metadata_digest(meta)
    (broken / "metadata.json").write_text(json.dumps(meta))
    (broken / "model.npz").write_bytes(b"not the trained model")
    settings = Settings.from_mapping(
        {
            **TEST_SECRETS,
            "MODERATION_MODEL_DIR": str(model_dir),
            "MODERATION_MODEL_CHECK_SECONDS": "0",
        }
    ).check()
    runtime = Runtime(settings)
    assert runtime.classifier().version == first

    (model_dir / "LIVE").write_text("broken\n")  # as a hand edit or an old rollback did
    with caplog.at_level(logging.ERROR, logger="workers.runtime"):
        assert runtime.classifier().version == first
        assert runtime.classifier().version == first
        with pytest.raises(ArtifactError, match="SHA-256 mismatch"):
            Runtime(settings).classifier()  # a fresh process has nothing to fall back on
    logged = [r.getMessage() for r in caplog.records if r.name == "workers.runtime"]
    assert len(logged) == 2
    assert logged[0].startswith("cannot load live model version broken (ArtifactError: ")
    assert "model.npz: SHA-256 mismatch" in logged[0]
    assert logged[0].endswith(f"; still scoring with {first}")
    assert logged[1].endswith("; cannot score")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": null, "spam": 0, "toxic": 0}', "text must be a non-empty string"),
        ('{"text": "   ", "spam": 0, "toxic": 0}', "text must be a non-empty string"),
        ('{"text": "ok", "spam": true, "toxic": 0}', "spam and toxic must be 0 or 1"),
        ('{"text": "ok", "spam": "1", "toxic": 0}', "spam and toxic must be 0 or 1"),
        ('{"text": "ok", "spam": 2, "toxic": 0}', "spam and toxic must be 0 or 1"),
        ('["text", 0, 0]', "not a moderator label"),
    ],
)
def test_a_bad_label_line_is_refused_naming_the_line_not_trained_on(
    tmp_path: Path, line: str, message: str
) -> None:
    """A null text used to be trained on as the word "None"."""
    from model.datasets import read_moderator_labels
    from model.errors import DataError

    path = tmp_path / "labels.jsonl"
    path.write_text('{"text": "fine", "spam": 0, "toxic": 1}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"labels.jsonl:2: {message}"):
        list(read_moderator_labels(path))
