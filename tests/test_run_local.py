"""`make run`'s start-up checks: a taken port is a clear one-line error, not a buried failure."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_local.py"


@pytest.fixture(scope="module")
def run_local() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_local", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that another process is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_taken_api_port_is_named_with_the_variable_to_change(
    run_local: ModuleType, listening: int
) -> None:
    message = run_local.port_problem("127.0.0.1", listening, "PORT")
    assert message is not None and "\n" not in message
    assert f"port {listening} on 127.0.0.1 is already in use" in message
    assert f"PORT={listening + 1}" in message


def test_a_free_port_passes_the_check(run_local: ModuleType) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert run_local.port_problem("127.0.0.1", free, "PORT") is None


def test_worker_metrics_move_to_a_free_port_when_9101_is_taken(run_local: ModuleType) -> None:
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", 9101))
            other.listen()
        except OSError:
            pass  # already taken by something else: the same situation
        port, note = run_local.worker_metrics_port({})
    assert port not in (None, 9101)
    assert "9101 is in use" in note and f"port {port}" in note


def test_a_taken_metrics_port_that_was_asked_for_is_an_error(
    run_local: ModuleType, listening: int
) -> None:
    port, message = run_local.worker_metrics_port(
        {"MODERATION_WORKER_METRICS_PORT": str(listening)}
    )
    assert port is None and "MODERATION_WORKER_METRICS_PORT" in message
    assert run_local.worker_metrics_port({"MODERATION_WORKER_METRICS_PORT": "0"}) == (0, "")


def test_readiness_is_polled_on_an_address_that_answers(run_local: ModuleType) -> None:
    assert run_local.readiness_url("127.0.0.1", "8000") == "http://127.0.0.1:8000/readyz"
    every = "0.0.0.0"  # noqa: S104 - an address string, nothing is bound
    assert run_local.readiness_url(every, "8001") == "http://127.0.0.1:8001/readyz"
    assert run_local.readiness_url("[::]", "8002") == "http://[::1]:8002/readyz"
    assert run_local.is_ready("http://127.0.0.1:1/readyz") is False


def test_an_exited_child_is_named_whatever_the_set_of_children(run_local: ModuleType) -> None:
    assert run_local.child_name(["/venv/bin/gunicorn", "-c", "x", "app"]) == "the API (gunicorn)"
    assert run_local.child_name(["/venv/bin/python", "-m", "workers", "worker", "--beat"]) == (
        "`python -m workers worker --beat`"
    )


def test_run_env_lets_the_cli_tools_reach_this_runs_redis(
    run_local: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tools read MODERATION_REDIS_URL; without it they would use another Redis."""
    import subprocess

    target = tmp_path / "run.env"
    monkeypatch.setattr(run_local, "RUN_ENV", target)
    tricky = 'it\'s $HOME; `x` "q"'
    run_local.write_run_env(
        {"MODERATION_REDIS_URL": "redis://127.0.0.1:4242/0", "MODERATION_X": tricky, "PATH": "/p"}
    )
    assert target.stat().st_mode & 0o777 == 0o600  # it holds the secrets
    shown = subprocess.run(
        [  # noqa: S607  # the shell an operator sources the file in
            "bash",
            "-c",
            f'. "{target}" && printf "%s\\n%s\\n%s" '
            '"$MODERATION_REDIS_URL" "$MODERATION_X" "${PATH:0:2}"',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert shown[:2] == ["redis://127.0.0.1:4242/0", tricky]
    assert "PATH" not in target.read_text()


def test_a_crashing_worker_is_restarted_within_a_budget(run_local: ModuleType) -> None:
    budget = run_local.RestartBudget(limit=3, window=60.0)
    assert [budget.allow(t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert budget.allow(61.5)  # the first restarts have left the window
