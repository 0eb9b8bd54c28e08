"""`make run`: start Redis (unless REDIS_URL is set), a Celery worker and the API, together.

Generates local secrets under var/ on first run; Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from workers.embedded_redis import EmbeddedRedis, free_port
from workers.privacy import generate_key

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
SECRETS = VAR / "secrets.env"
CHECKOUT_LOCK = VAR / "run.lock"
DEFAULT_WORKER_METRICS_PORT = 9101


def hold_checkout() -> tuple[int | None, str]:
    """Lock this checkout's var/ for this run; return the lock's descriptor, else None and why.

    Two runs in one checkout would start two redis-servers on the same append-only files (a
    rewrite by one replaces the other's data: comments that got a 202 are lost), and each would
    empty the other's metrics and overwrite its run.env. The lock is held while any process of
    the run lives: the children get the descriptor too, so a Redis or worker left behind by a
    killed run still holds it."""
    VAR.mkdir(parents=True, exist_ok=True)
    fd = os.open(CHECKOUT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        return None, checkout_in_use(int(holder) if holder.isdigit() else None)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd, ""


def checkout_in_use(pid: int | None) -> str:
    """Say, in one line, that another run holds this checkout's var/ and how to go on."""
    alive = pid is not None
    if pid is not None:
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            alive = False
        except PermissionError:  # another user's process, so it exists
            pass
    if alive:
        who = f"another `make run` (pid {pid}) is using"
        stop = f"Stop it first (Ctrl-C where it runs, or kill {pid})"
    else:  # the run itself was killed (kill -9), its children were not
        who = "processes of an earlier `make run`" + (f" (pid {pid}, gone)" if pid else "")
        who += " still use"
        stop = f"Stop its redis-server, workers and API first (fuser -v {CHECKOUT_LOCK} lists them)"
    return (
        f"make run: {who} this checkout's var/ (Redis data, metrics, run.env), which a second "
        f"run here would overwrite. {stop}, or start this one from another checkout "
        "(git clone) with another PORT."
    )


def load_or_create_secrets() -> dict[str, str]:
    """Return local secrets, generating them (mode 0600) on first run."""
    if not SECRETS.exists():
        VAR.mkdir(parents=True, exist_ok=True)
        values = {
            "MODERATION_SECRET_KEY": generate_key(),
            "MODERATION_EMAIL_ENCRYPTION_KEYS": generate_key(),
            "MODERATION_EMAIL_HMAC_KEY": generate_key(),
            "MODERATION_MODERATOR_TOKEN": generate_key(),
        }
        fd = os.open(SECRETS, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(f"{k}={v}\n" for k, v in values.items())
    pairs = (line.split("=", 1) for line in SECRETS.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def port_problem(host: str, port: int, variable: str) -> str | None:
    """Return a one-line message if host:port cannot be bound now (naming the variable to
    change), else None."""
    bare = host.strip("[]")  # an IPv6 literal as gunicorn takes it: [::1]
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bare or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"make run: cannot listen on {host}:{port}: {exc.strerror}; check the host name."
    with socket.socket(family, kind, proto) as probe:
        # As gunicorn binds: a port left in TIME_WAIT by a stopped run is free, a listener not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            # Not by a run in this checkout: main() has already refused to start beside one.
            why = (
                "is already in use (by another program, or a `make run` in another checkout)"
                if exc.errno == errno.EADDRINUSE
                else f"fails: {exc.strerror}"
            )
            return (
                f"make run: port {port} on {host} {why}; "
                f"set {variable} to a free port, e.g. {variable}={port + 1} make run"
            )
    return None


def worker_metrics_port(env: dict[str, str]) -> tuple[int | None, str]:
    """Choose the worker's metrics port: the one asked for, else 9101, else any free port.

    Returns the port (None when the one asked for is taken) and a line to print.
    """
    host = env.get("MODERATION_WORKER_METRICS_HOST", "127.0.0.1")
    asked = env.get("MODERATION_WORKER_METRICS_PORT", "")
    if asked:
        if not asked.isdigit():
            return None, f"make run: MODERATION_WORKER_METRICS_PORT must be a number, not {asked!r}"
        if int(asked) == 0:  # metrics turned off
            return 0, ""
        problem = port_problem(host, int(asked), "MODERATION_WORKER_METRICS_PORT")
        return (None, problem) if problem else (int(asked), "")
    if port_problem(host, DEFAULT_WORKER_METRICS_PORT, "MODERATION_WORKER_METRICS_PORT") is None:
        return DEFAULT_WORKER_METRICS_PORT, ""
    # Two checkouts on one machine: the second gets another port instead of a failing worker.
    port = free_port(host)
    return port, (
        f"make run: port {DEFAULT_WORKER_METRICS_PORT} is in use; worker metrics on port {port} "
        "(set MODERATION_WORKER_METRICS_PORT to choose)"
    )


def readiness_url(host: str, port: str) -> str:
    """Return the /readyz address to poll for an API bound to host:port."""
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0"):  # noqa: S104 - bound to every address; ask the loopback one
        bare = "127.0.0.1"
    elif bare == "::":
        bare = "::1"
    return f"http://{f'[{bare}]' if ':' in bare else bare}:{port}/readyz"


def is_ready(url: str) -> bool:
    """Return True when the API answers its readiness check with 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - our own http URL
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):  # not listening yet, or 503 until ready
        return False


RUN_ENV = VAR / "run.env"


def write_run_env(env: dict[str, str]) -> None:
    """Write the settings this run uses (mode 0600: they include the secrets) as shell exports,
    so `. var/run.env` points the operator tools (moderation-admin, moderation-model
    export-labels) at this run's Redis instead of a default one."""
    keys = sorted(k for k in env if k.startswith("MODERATION_"))
    RUN_ENV.unlink(missing_ok=True)
    fd = os.open(RUN_ENV, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Written by `make run`; run `. var/run.env` before the CLI tools.\n")
        handle.writelines(f"export {k}={shlex.quote(env[k])}\n" for k in keys)


class RestartBudget:
    """Allow restarting a crashed worker at most ``limit`` times within ``window`` seconds.

    kombu can crash a worker when its Redis connection drops; production runs workers under
    a restart policy (compose: `restart: unless-stopped`), and `make run` does the same for
    its workers. A worker that keeps crashing uses the budget up and stops the run."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._times: list[float] = []

    def allow(self, now: float) -> bool:
        """Record a restart at ``now`` if the budget allows it; return whether it does."""
        self._times = [t for t in self._times if now - t < self.window]
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


def child_name(argv: object) -> str:
    """Name a child process for a message: the API, or its `python -m workers ...` command."""
    words = [str(word) for word in argv] if isinstance(argv, list) else [str(argv)]
    if Path(words[0]).name == "gunicorn":
        return "the API (gunicorn)"
    return "`python " + " ".join(words[1:]) + "`"


def main() -> int:
    # Everything this run writes (Redis's append-only file holds comments and encrypted
    # emails; var/run.env holds secrets) is readable by this user only.
    os.umask(0o077)
    # First, before anything under var/ is read or written.
    lock, in_use = hold_checkout()
    if lock is None:
        print(in_use, file=sys.stderr)
        return 2
    env = dict(os.environ)
    for key, value in load_or_create_secrets().items():
        env.setdefault(key, value)
    env.setdefault("MODERATION_ENV", "development")
    env.setdefault("MODERATION_MODEL_DIR", str(VAR / "models"))
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    # Check the ports first: a taken one would otherwise fail seconds later, deep in the
    # workers' output, while a banner pointed at whatever else listens there.
    if not port.isdigit():
        print(f"make run: PORT must be a port number, not {port!r}", file=sys.stderr)
        return 2
    problem = port_problem(host, int(port), "PORT")
    metrics_port, metrics_note = worker_metrics_port(env)
    if problem or metrics_port is None:
        print(problem or metrics_note, file=sys.stderr)
        return 2
    if metrics_note:
        print(metrics_note, flush=True)
    redis_server: EmbeddedRedis | None = None
    if not env.get("REDIS_URL") and not env.get("MODERATION_REDIS_URL"):
        redis_server = EmbeddedRedis(VAR / "redis", pass_fds=(lock,)).start()
        env["MODERATION_REDIS_URL"] = redis_server.url
    bin_dir = Path(sys.executable).parent
    # Prometheus multiprocess mode: gunicorn's and Celery's processes write their samples to
    # files; one directory per role (each role is scraped on its own), emptied at start so
    # counters restart with the processes, as Prometheus expects.
    metrics_root = VAR / "metrics"
    shutil.rmtree(metrics_root, ignore_errors=True)
    api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_root / "api")}
    worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_root / "worker")}
    worker_env["MODERATION_WORKER_METRICS_PORT"] = str(metrics_port)
    for role_env in (api_env, worker_env):
        Path(role_env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True)
    # The recommended workers for a 2-core host: two solo-pool processes, one per core
    # (batched scoring; docs/benchmarks.md). The first also runs beat and serves metrics.
    plain_env = {k: v for k, v in worker_env.items() if k != "MODERATION_WORKER_METRICS_PORT"}

    def spawn(argv: list[str], child_env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=child_env, cwd=ROOT, pass_fds=(lock,))  # noqa: S603

    worker_specs = [
        ([sys.executable, "-m", "workers", "worker", "--beat"], worker_env),
        ([sys.executable, "-m", "workers", "worker"], plain_env),
        # Webhooks on their own worker (threads, no model): a slow site never delays scoring.
        ([sys.executable, "-m", "workers", "webhooks"], plain_env),
    ]
    workers = [spawn(argv, child_env) for argv, child_env in worker_specs]
    children = list(workers)
    children += [
        subprocess.Popen(  # noqa: S603 - fixed argv
            [
                str(bin_dir / "gunicorn"),
                "-c",
                "python:service.gunicorn_conf",
                "service:create_app()",
            ],
            env=api_env,
            cwd=ROOT,
            pass_fds=(lock,),
        ),
    ]
    redis_url = env.get("MODERATION_REDIS_URL") or env.get("REDIS_URL")
    # The tools read MODERATION_REDIS_URL first: name the Redis this run uses, however given.
    write_run_env({**env, "MODERATION_REDIS_URL": redis_url or ""})
    metrics_host = worker_env.get("MODERATION_WORKER_METRICS_HOST", "127.0.0.1")
    worker_metrics = f"http://{metrics_host}:{metrics_port}/metrics" if metrics_port else "off"
    banner = (
        f"\nComment moderation service is ready.\n"
        f"  Demo article + comment form: http://{host}:{port}/\n"
        f"  API:                         http://{host}:{port}/api/v1/comments\n"
        f"  Readiness:                   http://{host}:{port}/readyz\n"
        f"  Metrics (API, queues):       http://{host}:{port}/metrics\n"
        f"  Metrics (worker):            {worker_metrics}\n"
        f"  Redis:                       {redis_url}\n"
        f"  Moderator token:             {env['MODERATION_MODERATOR_TOKEN']}\n"
        f"  Operator tools:              . var/run.env && .venv/bin/moderation-admin --help\n"
        f"  (this run's settings and secrets in {RUN_ENV}; Ctrl-C stops everything)\n"
    )
    print(
        "Starting Redis, two workers, the webhook worker and the API; the addresses follow once "
        "ready.",
        flush=True,
    )
    ready_url = readiness_url(host, port)
    ready = False
    next_check = 0.0
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # A closed terminal: stop everything, rather than leave Redis, workers and API behind.
    signal.signal(signal.SIGHUP, stop)
    budget = RestartBudget()
    try:
        while not stopping:
            if ready:  # once up, a crashed worker is restarted (the API is not)
                for i, worker in enumerate(workers):
                    if worker.poll() is None or not budget.allow(time.monotonic()):
                        continue
                    argv, child_env = worker_specs[i]
                    print(
                        f"make run: {child_name(argv)} exited (code {worker.returncode}); "
                        "restarting it.",
                        file=sys.stderr,
                        flush=True,
                    )
                    children[children.index(worker)] = workers[i] = spawn(argv, child_env)
            if any(child.poll() is not None for child in children):
                break
            if not ready and time.monotonic() >= next_check:
                # The banner only once the API answers: until then its addresses do not work.
                ready = is_ready(ready_url)
                if ready:
                    print(banner, flush=True)
                next_check = time.monotonic() + 0.5
            time.sleep(0.2)
        exited = [child for child in children if child.poll() is not None]
        if exited and not stopping:
            print(
                f"make run: {child_name(exited[0].args)} exited (code {exited[0].returncode})"
                f"{'' if ready else ' before the service was ready'}; see its output above. "
                "Stopping everything.",
                file=sys.stderr,
                flush=True,
            )
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server is not None:
            redis_server.stop()
    failed = [
        child.args for child in children if child.returncode not in (0, -signal.SIGTERM, None)
    ]
    return 1 if failed and not stopping else 0


if __name__ == "__main__":
    sys.exit(main())
