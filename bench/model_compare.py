"""Scoring speed of this tree's model against another commit's, measured in the same run.

The machines are shared and their speed drifts by 2-4x within an hour, so a change to the
features is judged by alternating the two code trees (each with its own bundled artifact) in
fresh interpreters on the same comments, and comparing medians. The other commit is checked
out with ``git worktree`` into a temporary folder and removed afterwards.

Writes bench/results/model_compare.json and model_compare.md.
Run: .venv/bin/python bench/model_compare.py --data ../shared/data --against <commit>
     (or `make bench-model-compare AGAINST=<commit>`)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from model_speed import workload  # noqa: E402  # bench/ is not a package

RESULTS = Path(__file__).resolve().parent / "results"
GIT = shutil.which("git") or "git"

# Run inside a fresh interpreter with the tree to measure first on sys.path.
PROBE = """
import json, sys, time
sys.path.insert(0, {tree!r})
from pathlib import Path
import numpy as np
from model.registry import bundled_artifacts_dir, load_classifier, newest_artifact
texts = json.loads(Path({texts!r}).read_text())
artifact = newest_artifact(bundled_artifacts_dir())
clf = load_classifier(artifact)
clf.score_batch(texts[:100])
runs = []
for _ in range(3):
    start = time.perf_counter()
    for i in range(0, len(texts), 1000):
        clf.score_batch(texts[i : i + 1000])
    runs.append((time.perf_counter() - start) / len(texts) * 1e6)
single = []
for t in texts[:1000]:
    start = time.perf_counter()
    clf.score(t)
    single.append(time.perf_counter() - start)
print(json.dumps({{
    "artifact": artifact.name,
    "batch_us": float(np.median(runs)),
    "single_p50_ms": float(np.median(single) * 1000),
}}))
"""


def measure(tree: Path, texts: Path) -> dict[str, Any]:
    code = PROBE.format(tree=str(tree), texts=str(texts))
    out = subprocess.run(  # noqa: S603  # our own interpreter and probe
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tree
    )
    if out.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def paired_ratio(runs: dict[str, list[dict[str, Any]]], key: str) -> dict[str, float]:
    """Median and range of this/other within each round: a round's two runs share the host's
    speed of that moment, which drifts 2-4x within an hour on these shared machines."""
    ratios = [t[key] / o[key] for t, o in zip(runs["this"], runs["other"], strict=True)]
    return {
        "median": float(np.median(ratios)),
        "min": float(min(ratios)),
        "max": float(max(ratios)),
        "rounds_this_faster": sum(r < 1 for r in ratios),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--against", required=True, help="The commit to compare with.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--comments", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    data = args.data.resolve()
    commit = subprocess.run(  # noqa: S603  # git, with our arguments
        [GIT, "rev-parse", "--short", args.against],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="model-compare-") as tmp:
        # The same comments as `make bench-model`, picked by this tree for both sides.
        texts = Path(tmp) / "comments.json"
        texts.write_text(json.dumps(workload(data, args.comments)))
        other = Path(tmp) / commit
        subprocess.run(  # noqa: S603  # git, with our arguments
            [GIT, "worktree", "add", "--detach", "--quiet", str(other), commit],
            check=True,
            cwd=ROOT,
        )
        try:
            runs: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
            for i in range(args.rounds):  # alternate, each side first every other round
                order = [("other", other), ("this", ROOT)]
                for side, tree in order if i % 2 == 0 else order[::-1]:
                    runs[side].append(measure(tree, texts))
        finally:
            subprocess.run(  # noqa: S603  # git, with our arguments
                [GIT, "worktree", "remove", "--force", str(other)], check=False, cwd=ROOT
            )
    summary = {
        side: {
            "artifact": found[0]["artifact"],
            "batch_us": float(np.median([r["batch_us"] for r in found])),
            "single_p50_ms": float(np.median([r["single_p50_ms"] for r in found])),
        }
        for side, found in runs.items()
    }
    report = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "against": commit,
        "rounds": args.rounds,
        "comments": args.comments,
        "median": summary,
        # Per round, then the median: the host's speed cancels out within a round.
        "ratio_this_over_other": {
            key: paired_ratio(runs, key) for key in ("batch_us", "single_p50_ms")
        },
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_compare.json").write_text(json.dumps(report, indent=2) + "\n")
    this, other_s = summary["this"], summary["other"]
    ratio = report["ratio_this_over_other"]
    lines = [
        "# Model scoring speed: this tree against another commit",
        "",
        f"Against `{commit}`; {args.rounds} rounds in fresh interpreters, the two trees "
        f"alternating (each first in every other round), {args.comments} comments. "
        f"Machine: {report['machine']}. The ratio is the median of the per-round ratios "
        "(range in parentheses): both runs of a round share the host's speed of that moment.",
        "",
        "| measure | this tree (median) | other commit (median) | this / other, per round "
        "| rounds this faster |",
        "|---|---|---|---|---|",
        f"| artifact | `{this['artifact']}` | `{other_s['artifact']}` | | |",
        f"| batch, per comment | {this['batch_us']:.1f} µs | {other_s['batch_us']:.1f} µs "
        f"| {_ratio(ratio['batch_us'])} | {ratio['batch_us']['rounds_this_faster']} "
        f"of {args.rounds} |",
        f"| single comment p50 | {this['single_p50_ms']:.3f} ms "
        f"| {other_s['single_p50_ms']:.3f} ms | {_ratio(ratio['single_p50_ms'])} "
        f"| {ratio['single_p50_ms']['rounds_this_faster']} of {args.rounds} |",
        "",
    ]
    (args.out / "model_compare.md").write_text("\n".join(lines))
    print("\n".join(lines))


def _ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f} ({r['min']:.2f} to {r['max']:.2f})"


if __name__ == "__main__":
    main()
