"""Command line for training, evaluating, scoring and managing model versions."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from model.artifact import is_valid_version
from model.errors import ArtifactError, DataError
from model.registry import (
    VERSIONS_DIR,
    ModelRegistry,
    PromotionRefused,
    RegistryError,
    bundled_artifacts_dir,
    load_classifier,
    newest_artifact,
)
from model.scoring import Classifier

_DIR = click.Path(file_okay=False, path_type=Path)
_EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def cli() -> None:
    """Train, evaluate and serve the spam/toxicity model."""


def _is_registry(path: Path) -> bool:
    return ModelRegistry(path).exists()


def _existing_registry(path: Path) -> ModelRegistry:
    """Return the registry at ``path``, failing clearly if there is none (a mistyped path)."""
    registry = ModelRegistry(path)
    if not registry.exists():
        raise click.ClickException(f"no model registry at {path}")
    return registry


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> click.ClickException:
    byte = exc.object[exc.start : exc.start + 1]
    return click.ClickException(f"{path}: not UTF-8 text (byte {byte!r}); save it as UTF-8")


def _check_label_files(label_files: tuple[Path, ...]) -> None:
    """Read every moderator-label file up front, so a bad one fails before a long run."""
    from model.evaluation_sets import read_label_rows

    for path in label_files:
        try:
            read_label_rows(path)
        except DataError as exc:
            raise click.ClickException(str(exc)) from exc


def _check_new_version(version: str | None, out_dir: Path, registry: bool) -> None:
    """Refuse a --version name that is unsafe or already taken, before training starts."""
    if version is None:
        return
    if not is_valid_version(version):
        raise click.BadParameter(
            f"{version!r} is not a version name (one line, no spaces or slashes, "
            "not starting with '.', at most 200 characters)",
            param_hint="'--version'",
        )
    target = out_dir / VERSIONS_DIR / version if registry else out_dir / version
    if target.exists():
        raise click.BadParameter(f"{target} already exists", param_hint="'--version'")


def _goal_options(func: Any) -> Any:
    """Add the threshold goals (defaults: the moderation policy's) to a training command."""
    func = click.option(
        "--max-miss-rate",
        type=click.FloatRange(0.0, 0.5),
        default=0.01,
        show_default=True,
        help="Auto-approve only below scores that let at most this share of spam/toxic through.",
    )(func)
    func = click.option(
        "--reject-precision",
        type=click.FloatRange(0.5, 1.0),
        default=0.99,
        show_default=True,
        help="Auto-reject spam only where out-of-fold precision is at least this.",
    )(func)
    return func


@cli.command()
@click.option(
    "--data",
    "data_dir",
    type=_EXISTING_DIR,
    required=True,
    help="Folder with the public datasets (e.g. ../shared/data).",
)
@click.option(
    "--labels",
    "label_files",
    type=_EXISTING_FILE,
    multiple=True,
    help="Moderator decisions (JSONL from export-labels); repeatable.",
)
@click.option(
    "--out",
    "out_dir",
    type=_DIR,
    required=True,
    help="A registry root (candidate goes to versions/) or a folder for the artifact.",
)
@click.option(
    "--max-rows-per-source",
    type=click.IntRange(min=10),
    default=None,
    help="Sample at most this many rows per dataset (quick experiments).",
)
@click.option("--version", "version", default=None, help="Version name (default: time + hash).")
@click.option("--quiet", is_flag=True, help="Hide the progress bar.")
@_goal_options
def train(
    data_dir: Path,
    label_files: tuple[Path, ...],
    out_dir: Path,
    max_rows_per_source: int | None,
    version: str | None,
    quiet: bool,
    reject_precision: float,
    max_miss_rate: float,
) -> None:
    """Train a candidate model version (never made live here; use promote)."""
    from model.features import TrainConfig
    from model.training import train as run_training

    config = TrainConfig(
        max_rows_per_source=max_rows_per_source,
        reject_precision=reject_precision,
        max_miss_rate=max_miss_rate,
    )
    _check_new_version(version, out_dir, _is_registry(out_dir))
    _check_label_files(label_files)
    try:
        if _is_registry(out_dir):
            with tempfile.TemporaryDirectory(prefix="train-") as tmp:
                result = run_training(
                    data_dir,
                    Path(tmp),
                    label_files=label_files,
                    config=config,
                    progress=not quiet,
                    version=version,
                )
                ModelRegistry(out_dir).add_candidate(result.folder)
            where = out_dir / VERSIONS_DIR / result.version
        else:
            result = run_training(
                data_dir,
                out_dir,
                label_files=label_files,
                config=config,
                progress=not quiet,
                version=version,
            )
            where = result.folder
    except (DataError, ArtifactError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # e.g. --out not writable, or the version appeared meanwhile
        raise click.ClickException(f"cannot write the artifact: {exc}") from exc
    validation = result.metadata["metrics"]["validation"]
    click.echo(f"trained candidate {result.version} -> {where}")
    for label in ("spam", "toxic"):
        auc = validation[label]["overall"]["roc_auc"]
        click.echo(f"  {label}: out-of-fold ROC-AUC {auc:.4f}")
    click.echo(result.version)


def _model_options(func: Any) -> Any:
    func = click.option(
        "--artifact",
        type=_EXISTING_DIR,
        default=None,
        help="An artifact folder (default: the bundled model).",
    )(func)
    func = click.option(
        "--version", "version", default=None, help="Version in --registry (default: live)."
    )(func)
    func = click.option("--registry", type=_DIR, default=None, help="Registry root.")(func)
    return func


def _resolve_model(registry: Path | None, version: str | None, artifact: Path | None) -> Classifier:
    try:
        if artifact is not None:
            return load_classifier(artifact)
        if registry is not None:
            return ModelRegistry(registry).load(version)
        return load_classifier(newest_artifact(bundled_artifacts_dir()))
    except (ArtifactError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@_model_options
@click.option(
    "--data",
    "data_dir",
    type=_EXISTING_DIR,
    default=None,
    help="Datasets folder; its OLID official test set A is used.",
)
@click.option(
    "--labels",
    "label_files",
    type=_EXISTING_FILE,
    multiple=True,
    help="Labelled JSONL (moderator format) to evaluate on; repeatable.",
)
@click.option("--out", "out_dir", type=_DIR, required=True, help="Folder for the report.")
def evaluate(
    registry: Path | None,
    version: str | None,
    artifact: Path | None,
    data_dir: Path | None,
    label_files: tuple[Path, ...],
    out_dir: Path,
) -> None:
    """Report held-out metrics (markdown, JSON, ROC/PR curves, confusion matrices)."""
    from model.evaluation_sets import default_eval_sets
    from model.evaluation_sets import evaluate as run_evaluation

    classifier = _resolve_model(registry, version, artifact)
    try:
        sets = default_eval_sets(data_dir, label_files)
    except DataError as exc:
        raise click.ClickException(str(exc)) from exc
    if not sets:
        raise click.ClickException("no evaluation set: pass --data and/or --labels")
    report = run_evaluation(classifier, sets, out_dir)
    for name, m in report["sets"].items():
        click.echo(f"{name}: ROC-AUC {m['roc_auc']:.4f}  Brier {m['brier']:.4f}  n={int(m['n'])}")
    click.echo(f"report written to {out_dir}")


def _read_texts(path: Path) -> tuple[list[dict[str, Any]], list[str], str]:
    """Read rows with a ``text`` field from CSV or JSONL; return rows, field names, format."""
    kind = "jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"
    try:
        # utf-8-sig: spreadsheet programs often start a UTF-8 file with a byte-order mark.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            if kind == "jsonl":
                return _read_jsonl(path, handle), ["text"], kind
            rows, fields = _read_csv(path, handle)
            return rows, fields, kind
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc


def _read_jsonl(path: Path, handle: TextIO) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise click.ClickException(f"{path}:{number}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise click.ClickException(f"{path}:{number}: not a JSON object")
        _check_text(path, number, row.get("text", ...))
        rows.append(row)
    return rows


def _read_csv(path: Path, handle: TextIO) -> tuple[list[dict[str, Any]], list[str]]:
    reader = csv.DictReader(handle)
    try:
        fields = reader.fieldnames
        if not fields:
            raise click.ClickException(f"{path}: empty; the first line must name the columns")
        if "text" not in fields:
            raise click.ClickException(
                f"{path}: no 'text' column (the header has: {', '.join(fields)})"
            )
        rows: list[dict[str, Any]] = []
        for row in reader:
            if None in row:  # DictReader files surplus cells under the key None
                raise click.ClickException(
                    f"{path}:{reader.line_num}: more cells than the header's {len(fields)}"
                )
            _check_text(path, reader.line_num, row["text"], none="missing (a short row)")
            rows.append(row)
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() characters
        raise click.ClickException(f"{path}:{reader.line_num}: not valid CSV ({exc})") from exc
    return rows, list(fields)


_JSON_TYPES = {bool: "true/false", int: "a number", float: "a number", list: "an array"}


def _check_text(path: Path, line: int, text: object, none: str = "null") -> None:
    """Refuse a row whose text is absent or not a string (``none`` says what None means)."""
    if text is ...:
        raise click.ClickException(f"{path}:{line}: no 'text' field")
    if not isinstance(text, str):
        what = none if text is None else _JSON_TYPES.get(type(text), "an object")
        raise click.ClickException(f"{path}:{line}: 'text' must be a string, not {what}")


def _jsonl_line(row: dict[str, Any]) -> str:
    """Return ``row`` as one JSON line, escaping what UTF-8 cannot hold (lone surrogates)."""
    line = json.dumps(row, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(row)  # ASCII \uXXXX escapes keep the input's text exactly
    return line + "\n"


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@cli.command()
@_model_options
@click.argument("input_path", type=_EXISTING_FILE)
@click.option(
    "--output",
    "output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="Where to write the scored rows (default: stdout).",
)
def score(
    registry: Path | None,
    version: str | None,
    artifact: Path | None,
    input_path: Path,
    output: TextIO,
) -> None:
    """Score a CSV or JSONL file with a 'text' column; add 'spam' and 'toxic' columns."""
    classifier = _resolve_model(registry, version, artifact)
    rows, fields, kind = _read_texts(input_path)
    for chunk in _chunks(rows, 1000):
        for row, (spam, toxic) in zip(
            chunk, classifier.score_batch([str(r["text"]) for r in chunk]), strict=True
        ):
            row["spam"], row["toxic"] = round(spam, 6), round(toxic, 6)
    if kind == "jsonl":
        for row in rows:
            output.write(_jsonl_line(row))
    else:
        names = [f for f in fields if f not in ("spam", "toxic")] + ["spam", "toxic"]
        writer = csv.DictWriter(output, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


_REGISTRY = click.option("--registry", type=_DIR, required=True, help="Registry root.")


@cli.command()
@_REGISTRY
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even if worse than the live model.")
def promote(registry: Path, version: str, force: bool) -> None:
    """Make VERSION live (refused if it scores worse than the live model, unless --force)."""
    try:
        comparison = ModelRegistry(registry).promote(version, force=force)
    except PromotionRefused as exc:
        raise click.ClickException(f"{exc} (use --force to promote anyway)") from exc
    except (RegistryError, ArtifactError, DataError) as exc:
        raise click.ClickException(str(exc)) from exc
    if comparison is not None:
        if comparison.evaluation_rows:
            click.echo(comparison.left_out_note())
        for label, c in comparison.labels.items():
            click.echo(
                f"{label}: candidate ROC-AUC {c['candidate']:.4f}, live {c['live']:.4f} "
                f"on {c['set']}"
            )
    click.echo(f"live version: {version}")


@cli.command()
@_REGISTRY
def rollback(registry: Path) -> None:
    """Make the previously live version live again."""
    try:
        result = ModelRegistry(registry).rollback()
    except (RegistryError, ArtifactError) as exc:
        raise click.ClickException(str(exc)) from exc
    for skipped, why in result.skipped:
        click.echo(f"skipped {skipped}, which cannot be loaded: {why}", err=True)
    click.echo(f"live version: {result.version}")


@cli.command(name="list")
@_REGISTRY
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_versions(registry: Path, as_json: bool) -> None:
    """List stored versions, marking the live one."""
    try:
        versions = _existing_registry(registry).list_versions()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(versions, indent=2))
        return
    for v in versions:
        mark = "*" if v["live"] else " "
        spam, toxic = v.get("spam_roc_auc"), v.get("toxic_roc_auc")
        aucs = (
            f"spam AUC {spam:.4f}  toxic AUC {toxic:.4f}"
            if spam is not None and toxic is not None
            else v.get("error", "")
        )
        click.echo(f"{mark} {v['version']}  {v.get('created_at') or ''}  {aucs}")


@cli.command()
@_REGISTRY
@click.option(
    "--source",
    type=_EXISTING_DIR,
    default=None,
    help="Folder of artifacts to seed from (default: the bundled model).",
)
def seed(registry: Path, source: Path | None) -> None:
    """Make the bundled default model live if the registry has no live version."""
    try:
        click.echo(ModelRegistry(registry).ensure_seeded(source))
    except (RegistryError, ArtifactError) as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command(name="build-default")
@click.option(
    "--data", "data_dir", type=_EXISTING_DIR, required=True, help="Folder with the public datasets."
)
@click.option(
    "--out",
    "out_dir",
    type=_DIR,
    default=None,
    help="Where to put the artifact (default: the package's model/artifacts).",
)
@_goal_options
def build_default(
    data_dir: Path, out_dir: Path | None, reject_precision: float, max_miss_rate: float
) -> None:
    """Train on all public data and replace the bundled default artifact (used by make model)."""
    from model.features import TrainConfig
    from model.training import train as run_training

    target = out_dir or bundled_artifacts_dir()
    config = TrainConfig(reject_precision=reject_precision, max_miss_rate=max_miss_rate)
    with tempfile.TemporaryDirectory(prefix="default-") as tmp:
        result = run_training(data_dir, Path(tmp), config=config)
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            if old.is_dir() and (old / "metadata.json").exists():
                shutil.rmtree(old)
        shutil.copytree(result.folder, target / result.version)
    click.echo(f"default model {result.version} -> {target / result.version}")


def main() -> None:
    """Console-script entry point (``moderation-model``)."""
    cli(prog_name="moderation-model")


if __name__ == "__main__":
    main()
