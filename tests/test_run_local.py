"""`make run`'s start-up checks: a taken port is a clear one-line error, not a buried failure."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import wait_for

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
    # Never a second run in this checkout (that one stops earlier, on the checkout's lock).
    assert "a `make run` in another checkout" in message


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Run:
    """run_local.py started in its own session, its output in a file."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout of its own for run_local.py: its var/ is this test's, not the repository's."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "run_local.py")
    return tmp_path


def _stop_session(leader: int) -> None:
    """Stop every process left in a run's session (its children outlive a killed run)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.killpg(leader, sig)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture
def start_run(checkout: Path) -> Iterator[Callable[..., Run]]:
    """Start run_local.py in the checkout as `make run` does, with any settings given."""
    started: list[Run] = []

    def start(**settings: str) -> Run:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MODERATION_", "REDIS_", "PROMETHEUS_")) and k != "PORT"
        }
        env |= {"PORT": str(_free_port()), "MODERATION_WORKER_METRICS_PORT": "0", **settings}
        log = checkout / f"run-{len(started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, str(checkout / "scripts" / "run_local.py")],
                env=env,
                cwd=checkout,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(Run(process, log))
        return started[-1]

    yield start
    for run in started:
        _stop_session(run.process.pid)
        run.process.wait(timeout=10)


@pytest.mark.slow
def test_a_second_run_in_the_same_checkout_refuses_before_touching_var(
    checkout: Path, start_run: Callable[..., Run]
) -> None:
    """Two runs in one checkout would run two redis-servers on one append-only file (a rewrite
    by one drops the other's comments), and blank each other's metrics and run.env. A second
    run stops at once, says why and what to do, and leaves var/ as the first run has it: with
    a private Redis or an external one (REDIS_URL), and even when the first run's own process
    was killed and its Redis, workers and API live on."""
    var = checkout / "var"
    first = start_run()
    wait_for(lambda: (var / "run.env").exists() or first.process.poll() is not None, timeout=60)
    assert first.process.poll() is None, first.output()
    run_env = (var / "run.env").read_bytes()
    counted = var / "metrics" / "api" / "counter_1.db"  # what the first run's API has counted
    counted.write_bytes(b"first run's samples")

    def assert_refused(second: Run) -> str:
        try:
            second.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"a second run started in the same checkout:\n{second.output()}")
        message = second.output()
        assert second.process.returncode == 2, message
        assert "Traceback" not in message and len(message.strip().splitlines()) == 1, message
        assert "this checkout's var/" in message and "another checkout" in message, message
        assert (var / "run.env").read_bytes() == run_env
        assert counted.read_bytes() == b"first run's samples"
        redis_log = (var / "redis" / "redis.log").read_text()
        assert redis_log.count("Ready to accept connections") == 1  # one server on the files
        return message

    message = assert_refused(start_run())
    pid = first.process.pid
    assert f"another `make run` (pid {pid})" in message and f"kill {pid}" in message
    assert_refused(start_run(REDIS_URL=f"redis://127.0.0.1:{_free_port()}/0"))
    assert first.process.poll() is None, first.output()

    first.process.kill()  # the run alone: its redis-server, workers and API go on using var/
    first.process.wait(timeout=10)
    message = assert_refused(start_run())
    assert f"pid {pid}, gone" in message, message


@pytest.mark.slow
def test_closing_the_terminal_stops_the_whole_run(
    checkout: Path, start_run: Callable[..., Run]
) -> None:
    """SIGHUP (the terminal `make run` runs in is closed) stops Redis, the workers and the API
    as Ctrl-C does: nothing is left holding this checkout's var/."""
    var = checkout / "var"
    run = start_run()
    wait_for(lambda: (var / "run.env").exists() or run.process.poll() is not None, timeout=60)
    assert run.process.poll() is None, run.output()
    os.kill(run.process.pid, signal.SIGHUP)
    run.process.wait(timeout=60)
    with (var / "run.lock").open("a") as lock:  # no process of the run holds it any more
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
