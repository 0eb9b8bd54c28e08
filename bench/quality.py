"""Quality benchmark: fixed protocols for the spam and toxic heads, side by side with
alt-profanity-check. Writes bench/results/quality.json, quality.md and quality.png.

Run: .venv/bin/python bench/quality.py --data ../shared/data   (or `make bench-quality`)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.datasets import (  # the repo root is put on sys.path above
    SPAM,
    TOXIC,
    Row,
    dedupe,
    dedupe_key,
    load_rows,
    read_olid_test,
    read_youtube,
    toxic_span_word_counts,
    with_comment_ham,
)
from model.evaluation import (
    best_f1_threshold,
    binary_metrics,
    hold_threshold,
    jsonable,
    macro_f1,
    reject_threshold,
)
from model.features import TrainConfig
from model.lexicon import build_lexicon
from model.training import fit_heads, predict_label

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {
    "youtube_lovo_roc_auc": 0.99,
    "sms_cv_roc_auc": 0.99,
    "olid_test_roc_auc": 0.86,
    "olid_test_macro_f1": 0.76,
    "davidson_cv_roc_auc": 0.97,
}


def profanity_check(texts: Sequence[str]) -> NDArray[np.float64]:
    """Return alt-profanity-check probabilities (the baseline)."""
    from profanity_check import predict_prob

    return np.asarray(predict_prob(list(texts)), dtype=np.float64)


class Fold:
    """Predictions of one train/test split, plus thresholds chosen on its training OOF."""

    def __init__(
        self,
        y: NDArray[np.int_],
        p: NDArray[np.float64],
        base: NDArray[np.float64],
        thresholds: dict[str, float],
    ) -> None:
        self.y, self.p, self.base, self.thresholds = y, p, base, thresholds


def run_split(
    train_rows: list[Row],
    test_rows: list[Row],
    label: str,
    config: TrainConfig,
    lexicon: list[str],
    baseline: bool,
) -> tuple[Fold, dict[str, NDArray[np.float64]], list[Row]]:
    """Train one head on train_rows (minus texts in the test set) and score test_rows.

    ``train_rows`` hold both heads' rows: the idf is fitted on all of them, as in the shipped
    model, while only ``label``'s head is trained."""
    test_keys = {dedupe_key(r.text) for r in test_rows}
    train = [r for r in train_rows if dedupe_key(r.text) not in test_keys]
    train = [r for r in train if config.source_weights.get(r.source, 0.0) > 0]
    bundle, oof, heads = fit_heads(train, config, lexicon, labels=(label,))
    head = heads[label]
    # As in training: goals over the out-of-fold pool weighted like the training rows.
    if label == SPAM:
        thresholds = {
            "reject": reject_threshold(head.y, oof[label], weight=head.pool_weight),
            "hold": hold_threshold(head.y, oof[label], weight=head.pool_weight),
        }
    else:
        thresholds = {"hold": hold_threshold(head.y, oof[label], weight=head.pool_weight)}
    y = np.array([r.target for r in test_rows], dtype=np.int_)
    p = predict_label(bundle, label, [r.text for r in test_rows], config)
    base = profanity_check([r.text for r in test_rows]) if baseline else np.zeros(0)
    return Fold(y, p, base, thresholds), oof, head.rows


def bootstrap_auc_interval(
    folds: Sequence[Fold], rounds: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Return the 95 % bootstrap interval of the mean per-fold ROC-AUC.

    Each round resamples every fold's test rows (within each class, so both stay present).
    The seeds only move the calibration folds, and calibration does not change a ranking, so
    ROC-AUC is the same in every seed: this interval, not the seeds, says how much the figure
    owes to which comments happen to be in the test set."""
    rng = np.random.default_rng(seed)
    means = np.empty(rounds)
    for i in range(rounds):
        aucs = []
        for f in folds:
            pos, neg = np.flatnonzero(f.y == 1), np.flatnonzero(f.y == 0)
            pick = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
            aucs.append(roc_auc_score(f.y[pick], f.p[pick]))
        means[i] = np.mean(aucs)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"roc_auc_ci95_low": float(low), "roc_auc_ci95_high": float(high)}


def pooled(folds: Sequence[Fold]) -> tuple[NDArray[np.int_], NDArray[np.float64]]:
    return np.concatenate([f.y for f in folds]), np.concatenate([f.p for f in folds])


def threshold_checks(folds: Sequence[Fold], label: str) -> dict[str, float]:
    """Apply each fold's OOF-chosen thresholds to its unseen test fold; pool the outcomes."""
    out: dict[str, float] = {}
    held = caught = positives = 0
    rejected = rejected_spam = 0
    clean = clean_held = 0
    for f in folds:
        pos = f.y == 1
        positives += int(pos.sum())
        caught += int(np.sum(f.p[pos] >= f.thresholds["hold"]))
        clean += int((~pos).sum())
        clean_held += int(np.sum(f.p[~pos] >= f.thresholds["hold"]))
        held += int(np.sum(f.p >= f.thresholds["hold"]))
        if "reject" in f.thresholds:
            r = f.p >= f.thresholds["reject"]
            rejected += int(r.sum())
            rejected_spam += int(np.sum(r & pos))
    out["miss_rate_below_hold"] = 1.0 - caught / max(positives, 1)
    out["clean_share_held"] = clean_held / max(clean, 1)
    if label == SPAM:
        out["auto_reject_precision"] = rejected_spam / rejected if rejected else float("nan")
        out["auto_reject_recall"] = rejected_spam / max(positives, 1)
    return out


def median_over(seeds: Sequence[int], fn: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` per seed; return per-seed results and medians of numeric keys."""
    runs = [fn(s) for s in seeds]
    keys = [k for k, v in runs[0].items() if isinstance(v, float | int)]
    return {
        "median": {k: float(np.nanmedian([r.get(k, np.nan) for r in runs])) for k in keys},
        "per_seed": runs,
    }


def youtube_lovo(
    rows: list[Row],
    data: Path,
    config: TrainConfig,
    lexicon: list[str],
    seeds: Sequence[int],
    curves: dict[str, Any],
) -> dict[str, Any]:
    """Leave one video out: train on 4 videos + SMS + Instagram, test on the 5th (all rows)."""
    raw = list(read_youtube(data))
    videos = sorted({r.group for r in raw})
    others = rows  # both heads' rows: the idf is fitted on all of them, as in training

    def one(seed: int) -> dict[str, Any]:
        cfg = replace(config, random_state=seed)
        folds, per_video = [], {}
        for video in videos:
            test = [r for r in raw if r.group == video]
            train = [r for r in others if not (r.source == "youtube" and r.group == video)]
            fold, _, _ = run_split(train, test, SPAM, cfg, lexicon, baseline=seed == seeds[0])
            folds.append(fold)
            per_video[video] = binary_metrics(fold.y, fold.p)["roc_auc"]
            if seed == seeds[0]:
                per_video[f"{video}_profanity_check"] = binary_metrics(fold.y, fold.base)["roc_auc"]
        y, p = pooled(folds)
        if seed == seeds[0]:
            curves["YouTube (leave-one-video-out)"] = (y, p)
        result: dict[str, Any] = {
            "mean_roc_auc": float(np.mean([per_video[v] for v in videos])),
            "pooled_brier": binary_metrics(y, p)["brier"],
            **{f"roc_auc_{v}": per_video[v] for v in videos},
            **threshold_checks(folds, SPAM),
        }
        if seed == seeds[0]:
            result["profanity_check_mean_roc_auc"] = float(
                np.mean([per_video[f"{v}_profanity_check"] for v in videos])
            )
            result.update(bootstrap_auc_interval(folds))
        return result

    return median_over(seeds, one)


def stratified_cv(
    rows: list[Row],
    source: str,
    label: str,
    config: TrainConfig,
    lexicon: list[str],
    seeds: Sequence[int],
    curves: dict[str, Any],
    title: str,
) -> dict[str, Any]:
    """5-fold stratified CV on one source (de-duplicated); other sources stay in training."""
    target = [r for r in rows if r.source == source and r.label == label]
    rest = [r for r in rows if not (r.label == label and r.source == source)]
    y_all = np.array([r.target for r in target])

    def one(seed: int) -> dict[str, Any]:
        cfg = replace(config, random_state=seed)
        folds = []
        splitter = StratifiedKFold(5, shuffle=True, random_state=seed)
        for train_idx, test_idx in splitter.split(np.zeros(len(y_all)), y_all):
            test = [target[i] for i in test_idx]
            train = rest + [target[i] for i in train_idx]
            fold, _, _ = run_split(train, test, label, cfg, lexicon, baseline=seed == seeds[0])
            folds.append(fold)
        y, p = pooled(folds)
        if seed == seeds[0]:
            curves[title] = (y, p)
        result: dict[str, Any] = {
            "mean_roc_auc": float(np.mean([binary_metrics(f.y, f.p)["roc_auc"] for f in folds])),
            "pooled_brier": binary_metrics(y, p)["brier"],
            **threshold_checks(folds, label),
        }
        if seed == seeds[0]:
            result["profanity_check_mean_roc_auc"] = float(
                np.mean([binary_metrics(f.y, f.base)["roc_auc"] for f in folds])
            )
            result.update(bootstrap_auc_interval(folds))
        return result

    return median_over(seeds, one)


def olid_test(
    rows: list[Row],
    data: Path,
    config: TrainConfig,
    lexicon: list[str],
    seeds: Sequence[int],
    curves: dict[str, Any],
) -> dict[str, Any]:
    """Train on everything but OLID test A; threshold for F1 chosen on OLID-train OOF."""
    test = list(read_olid_test(data))
    base = profanity_check([r.text for r in test])
    olid_train = [r for r in rows if r.source == "olid" and r.label == TOXIC]
    base_train = profanity_check([r.text for r in olid_train])
    y_train = np.array([r.target for r in olid_train])
    base_th = best_f1_threshold(y_train, base_train)

    def one(seed: int) -> dict[str, Any]:
        cfg = replace(config, random_state=seed)
        fold, oof, head_rows = run_split(rows, test, TOXIC, cfg, lexicon, baseline=False)
        is_olid = np.array([r.source == "olid" for r in head_rows])
        y_oof = np.array([r.target for r in head_rows])[is_olid]
        th = best_f1_threshold(y_oof, oof[TOXIC][is_olid])
        if seed == seeds[0]:
            curves["OLID test A"] = (fold.y, fold.p)
        m = binary_metrics(fold.y, fold.p)
        return {
            **(bootstrap_auc_interval([fold]) if seed == seeds[0] else {}),
            "roc_auc": m["roc_auc"],
            "macro_f1": macro_f1(fold.y, fold.p, th),
            "macro_f1_threshold": th,
            "macro_f1_at_0.5": macro_f1(fold.y, fold.p, 0.5),
            "brier": m["brier"],
            **threshold_checks([fold], TOXIC),
        }

    result = median_over(seeds, one)
    bm = binary_metrics(np.array([r.target for r in test]), base)
    y_test = np.array([r.target for r in test])
    result["profanity_check"] = {
        "roc_auc": bm["roc_auc"],
        "brier": bm["brier"],
        "macro_f1": macro_f1(y_test, base, base_th),
        "macro_f1_threshold": base_th,
        "macro_f1_at_0.5": macro_f1(y_test, base, 0.5),
    }
    return result


def plot_reliability(curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    for name, (y, p) in curves.items():
        frac, mean = calibration_curve(y, p, n_bins=10, strategy="quantile")
        ax.plot(mean, frac, "o-", ms=3, label=name)
    ax.set(
        xlabel="predicted probability",
        ylabel="observed frequency",
        title="Reliability (held-out predictions)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    yt, sms = report["youtube_lovo"]["median"], report["sms_cv"]["median"]
    ol, dv = report["olid_test"]["median"], report["davidson_cv"]["median"]
    pc = report["olid_test"]["profanity_check"]

    def row(
        name: str, target: float, ours: float, base: float | None, m: dict[str, Any] | None = None
    ) -> str:
        ok = "pass" if ours >= target else "**miss**"
        b = f"{base:.4f}" if base is not None else "-"
        ci = (
            f"{m['roc_auc_ci95_low']:.4f} to {m['roc_auc_ci95_high']:.4f}"
            if m is not None and "roc_auc_ci95_low" in m
            else "-"
        )
        return f"| {name} | ≥ {target} | {ours:.4f} | {ci} | {b} | {ok} |"

    lines = [
        "# Model quality",
        "",
        f"Medians over seeds {report['seeds']} (Davidson: {report['davidson_seeds']}); "
        "generated by `bench/quality.py` "
        f"in {report['seconds']:.0f} s on {report['machine']}.",
        "",
        "| metric | target | ours | ours, 95 % bootstrap interval | alt-profanity-check | |",
        "|---|---|---|---|---|---|",
        row(
            "Spam, YouTube leave-one-video-out, mean ROC-AUC",
            0.99,
            yt["mean_roc_auc"],
            yt.get("profanity_check_mean_roc_auc"),
            yt,
        ),
        row(
            "Spam, SMS stratified 5-fold, ROC-AUC",
            0.99,
            sms["mean_roc_auc"],
            sms.get("profanity_check_mean_roc_auc"),
            sms,
        ),
        row("Toxic, OLID test A, ROC-AUC", 0.86, ol["roc_auc"], pc["roc_auc"], ol),
        row(
            "Toxic, OLID test A, macro-F1 (threshold from OLID-train OOF)",
            0.76,
            ol["macro_f1"],
            pc["macro_f1"],
        ),
        row(
            "Toxic, Davidson stratified 5-fold, ROC-AUC",
            0.97,
            dv["mean_roc_auc"],
            dv.get("profanity_check_mean_roc_auc"),
            dv,
        ),
        "",
        "## Calibration and thresholds on held-out data",
        "",
        "Thresholds are chosen on each training split's out-of-fold predictions (as in "
        "training) and applied to the unseen test split.",
        "",
        "| set | Brier | miss rate below hold | clean share held | auto-reject precision "
        "| auto-reject recall |",
        "|---|---|---|---|---|---|",
    ]
    for name, m, brier in (
        ("YouTube LOVO", yt, "pooled_brier"),
        ("SMS 5-fold", sms, "pooled_brier"),
        ("OLID test A", ol, "brier"),
        ("Davidson 5-fold", dv, "pooled_brier"),
    ):
        arp = m.get("auto_reject_precision")
        arr = m.get("auto_reject_recall")
        lines.append(
            f"| {name} | {m[brier]:.4f} | {m['miss_rate_below_hold']:.4f} | "
            f"{m['clean_share_held']:.3f} | {'-' if arp is None else f'{arp:.4f}'} | "
            f"{'-' if arr is None else f'{arr:.3f}'} |"
        )
    lines += [
        "",
        f"alt-profanity-check Brier on OLID test A: {pc['brier']:.4f}; its macro-F1 at 0.5: "
        f"{pc['macro_f1_at_0.5']:.4f} (ours at 0.5: {ol['macro_f1_at_0.5']:.4f}).",
        "",
        "Per-video ROC-AUC (YouTube, median over seeds): "
        + ", ".join(
            f"{k.removeprefix('roc_auc_')} {v:.4f}"
            for k, v in yt.items()
            if k.startswith("roc_auc_") and not k.startswith("roc_auc_ci95_")
        )
        + ".",
        "",
        "Reliability curves: `quality.png`. Raw numbers: `quality.json`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    # Davidson CV retrains the full toxic head 5 times per seed (~3.5 min a seed on 2 cores).
    parser.add_argument("--davidson-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data = args.data.resolve()
    config = TrainConfig()
    olid_keys = {dedupe_key(r.text) for r in read_olid_test(data)}
    rows = with_comment_ham(
        [r for r in dedupe(load_rows(data)) if dedupe_key(r.text) not in olid_keys]
    )
    lexicon = build_lexicon(*toxic_span_word_counts(data))
    curves: dict[str, Any] = {}
    report: dict[str, Any] = {
        "seeds": args.seeds,
        "davidson_seeds": args.davidson_seeds,
        "config": config.to_dict(),
    }
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("youtube_lovo", lambda: youtube_lovo(rows, data, config, lexicon, args.seeds, curves)),
        (
            "sms_cv",
            lambda: stratified_cv(
                rows, "sms", SPAM, config, lexicon, args.seeds, curves, "SMS (5-fold)"
            ),
        ),
        ("olid_test", lambda: olid_test(rows, data, config, lexicon, args.seeds, curves)),
        (
            "davidson_cv",
            lambda: stratified_cv(
                rows,
                "davidson",
                TOXIC,
                config,
                lexicon,
                args.davidson_seeds,
                curves,
                "Davidson (5-fold)",
            ),
        ),
    ]
    for name, step in steps:
        t = time.perf_counter()
        report[name] = step()
        print(
            f"{name}: {json.dumps(jsonable(report[name]['median']))} "
            f"({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    report["seconds"] = time.perf_counter() - start
    report["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    yt, sms = report["youtube_lovo"]["median"], report["sms_cv"]["median"]
    ol, dv = report["olid_test"]["median"], report["davidson_cv"]["median"]
    report["targets"] = {
        name: {"target": target, "value": value, "met": value >= target}
        for name, target, value in (
            ("youtube_lovo_roc_auc", TARGETS["youtube_lovo_roc_auc"], yt["mean_roc_auc"]),
            ("sms_cv_roc_auc", TARGETS["sms_cv_roc_auc"], sms["mean_roc_auc"]),
            ("olid_test_roc_auc", TARGETS["olid_test_roc_auc"], ol["roc_auc"]),
            ("olid_test_macro_f1", TARGETS["olid_test_macro_f1"], ol["macro_f1"]),
            ("davidson_cv_roc_auc", TARGETS["davidson_cv_roc_auc"], dv["mean_roc_auc"]),
        )
    }
    report["beats_profanity_check_on_olid"] = bool(
        ol["roc_auc"] > report["olid_test"]["profanity_check"]["roc_auc"]
        and ol["macro_f1"] > report["olid_test"]["profanity_check"]["macro_f1"]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
    (args.out / "quality.md").write_text(markdown(report))
    plot_reliability(curves, args.out / "quality.png")
    print(f"wrote {args.out / 'quality.md'} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
