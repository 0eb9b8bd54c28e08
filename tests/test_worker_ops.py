"""Worker operations: retries while Redis is unreachable, the health-check ping, beat, and the
operator tools' answer when Redis cannot be reached."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis as redis_lib

from tests.conftest import ROOT, TEST_SECRETS, Stack, WorkerProcess, wait_for
from workers.celery_app import create_celery
from workers.runtime import Runtime, redis_address, redis_failure
from workers.settings import Settings
from workers.tasks import redis_retry_delays, score_jobs


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_retry_waits_double_up_to_a_cap() -> None:
    assert redis_retry_delays(0) == ()
    assert redis_retry_delays(3) == pytest.approx((0.2, 0.4, 0.8))
    assert max(redis_retry_delays(10)) == 8.0


@pytest.mark.parametrize("retries", [0, 2])
def test_batch_retries_as_configured_then_leaves_comments_to_the_sweep(
    settings: Settings, retries: int, caplog: pytest.LogCaptureFixture
) -> None:
    down = settings.with_overrides(
        redis_url=f"redis://127.0.0.1:{_closed_port()}/0", task_max_retries=retries
    )
    app = create_celery(down)
    caplog.set_level(logging.WARNING, logger="workers.tasks")
    with pytest.raises(redis_lib.exceptions.ConnectionError):
        score_jobs(app, Runtime(down), [("c-1", "req-1")])
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Redis unavailable; retrying batch") == retries
    assert messages.count("Redis unavailable; batch left for the sweep") == 1


def _python_m(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own CLIs, fixed arguments
        [sys.executable, "-m", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _workers_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _python_m(env, "workers", *args)


def test_ping_succeeds_for_a_running_worker_and_fails_clearly_without_one(
    worker: WorkerProcess, worker_env: dict[str, str]
) -> None:
    found = _workers_cli(worker_env, "ping", "--timeout", "5")
    assert found.returncode == 0, found.stderr
    assert f"celery@{socket.gethostname()}: ok" in found.stdout
    missing = _workers_cli(worker_env, "ping", "--node", "celery@nowhere", "--timeout", "0.5")
    assert missing.returncode == 1
    assert "no answer from celery@nowhere" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_beat_keeps_its_schedule_beside_the_models_not_in_the_working_directory(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The container's working directory is not writable, so beat must not write there."""
    state, cwd = tmp_path / "state", tmp_path / "cwd"
    (state / "models").mkdir(parents=True)
    cwd.mkdir()
    env = {**worker_env, "PYTHONPATH": str(ROOT), "MODERATION_MODEL_DIR": str(state / "models")}
    proc = subprocess.Popen(  # our own CLI, fixed arguments
        [sys.executable, "-m", "workers", "beat"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: list(state.glob("celerybeat-schedule*")), timeout=20)
    finally:
        proc.terminate()
        proc.wait(20)
    assert not list(cwd.iterdir())


@pytest.mark.parametrize(
    "command",
    [
        ["service.cli", "tokens", "list"],
        ["service.cli", "tokens", "create", "--name", "alice"],
        ["service.cli", "tokens", "revoke", "alice"],
        ["service.cli", "purge"],
        ["workers", "sweep"],
    ],
    ids=lambda argv: " ".join(argv[1:]),
)
def test_operator_tools_name_an_unreachable_redis_in_one_line(
    command: list[str], tmp_path: Path
) -> None:
    """As after forgetting `. var/run.env`, or with the run it names stopped: one line naming
    the setting and where it points (never its password), no traceback, a failing exit."""
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODERATION_", "REDIS_"))}
    env |= {
        **TEST_SECRETS,
        "MODERATION_REDIS_URL": f"redis://:hunter2-secret@127.0.0.1:{port}/0",
        "MODERATION_MODEL_DIR": str(tmp_path / "models"),
    }
    done = _python_m(env, *command)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("Error: cannot ")
    assert f"Redis at 127.0.0.1:{port}" in done.stderr
    assert "is MODERATION_REDIS_URL right" in done.stderr
    assert "hunter2" not in done.stderr


def test_a_redis_failure_names_host_and_port_but_never_the_credentials() -> None:
    assert redis_address("redis://moderation:pw@[::1]/0") == "[::1]:6379"
    assert redis_address("rediss://:pw@cache.example:6380/2") == "cache.example:6380"
    line = redis_failure(
        "redis://:s3cret-pw@cache.example:6380/0",
        "list tokens",
        redis_lib.exceptions.AuthenticationError("refused s3cret-pw"),
    )
    assert line.startswith("cannot list tokens: Redis at cache.example:6380 failed")
    assert "s3cret" not in line and "AuthenticationError" in line


def test_while_no_worker_drains_the_queue_the_sweep_backs_off_per_comment(
    stack_factory: Callable[..., Stack],
) -> None:
    """Each sweep used to push one more copy of every waiting comment's message: a worker
    outage grew the broker queue (and Redis) by the whole backlog every sweep period. Now a
    comment sent again waits twice as long before its next resend: a few copies, not dozens."""
    from workers.celery_app import SCORING_QUEUE
    from workers.tasks import sweep

    stack = stack_factory()  # no worker: nothing drains the queue
    client = stack.client()
    ids = []
    for n in range(10):
        body = {"post_id": "p", "comment": f"Remark {n}.", "author": "A", "email": f"a{n}@x.org"}
        ids.append(client.post("/api/v1/comments", json=body).get_json()["id"])
    settings = stack.settings.with_overrides(sweep_after_seconds=0.05)
    runtime, app = Runtime(settings), create_celery(settings)
    queued = stack.redis.llen(SCORING_QUEUE)
    time.sleep(0.06)
    deadline = time.monotonic() + 1.6  # 32 sweep periods: one copy per period before
    while time.monotonic() < deadline:
        sweep(app, runtime)
        time.sleep(0.05)
    copies = (stack.redis.llen(SCORING_QUEUE) - queued) / len(ids)
    # Resends at about 0.05, 0.15, 0.35, 0.75 and 1.55 s: the waits double.
    assert 3 <= copies <= 7, copies
    assert {int(stack.record(i)["resends"]) for i in ids} == {int(copies)}
    # Every one is still listed for the next sweep, and a worker decides each once.
    assert all(stack.redis.zscore("mod:unscored", i) is not None for i in ids)
    stack.start_worker()
    wait_for(lambda: len(stack.decided(ids)) == len(ids), timeout=30)
