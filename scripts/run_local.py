"""`make run`: start Redis (unless REDIS_URL is set), a Celery worker and the API, together.

Generates local secrets under var/ on first run; Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from workers.embedded_redis import EmbeddedRedis
from workers.privacy import generate_key

ROOT = Path(__file__).resolve().parents[1]
VAR = ROOT / "var"
SECRETS = VAR / "secrets.env"


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


def main() -> int:
    env = dict(os.environ)
    for key, value in load_or_create_secrets().items():
        env.setdefault(key, value)
    env.setdefault("MODERATION_ENV", "development")
    env.setdefault("MODERATION_MODEL_DIR", str(VAR / "models"))
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    redis_server: EmbeddedRedis | None = None
    if not env.get("REDIS_URL") and not env.get("MODERATION_REDIS_URL"):
        redis_server = EmbeddedRedis(VAR / "redis").start()
        env["MODERATION_REDIS_URL"] = redis_server.url
    bin_dir = Path(sys.executable).parent
    # Prometheus multiprocess mode: gunicorn's and Celery's processes write their samples to
    # files; one directory per role (each role is scraped on its own), emptied at start so
    # counters restart with the processes, as Prometheus expects.
    metrics_root = VAR / "metrics"
    shutil.rmtree(metrics_root, ignore_errors=True)
    api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_root / "api")}
    worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_root / "worker")}
    worker_env.setdefault("MODERATION_WORKER_METRICS_PORT", "9101")
    for role_env in (api_env, worker_env):
        Path(role_env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True)
    # The recommended workers for a 2-core host: two solo-pool processes, one per core
    # (batched scoring; docs/benchmarks.md). The first also runs beat and serves metrics.
    plain_env = {k: v for k, v in worker_env.items() if k != "MODERATION_WORKER_METRICS_PORT"}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "workers", "worker", "--beat"],
            env=worker_env,
            cwd=ROOT,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "workers", "worker"],
            env=plain_env,
            cwd=ROOT,
        ),
    ]
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
        ),
    ]
    redis_url = env.get("MODERATION_REDIS_URL") or env.get("REDIS_URL")
    print(
        f"\nComment moderation service is starting.\n"
        f"  Demo article + comment form: http://{host}:{port}/\n"
        f"  API:                         http://{host}:{port}/api/v1/comments\n"
        f"  Readiness:                   http://{host}:{port}/readyz\n"
        f"  Metrics (API, queues):       http://{host}:{port}/metrics\n"
        f"  Metrics (worker):            http://127.0.0.1:{worker_env['MODERATION_WORKER_METRICS_PORT']}/metrics\n"
        f"  Redis:                       {redis_url}\n"
        f"  Moderator token:             {env['MODERATION_MODERATOR_TOKEN']}\n"
        f"  (secrets in {SECRETS}; Ctrl-C stops everything)\n",
        flush=True,
    )
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
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
