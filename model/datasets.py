"""Readers for the public labelled datasets in the shared data folder (one function per set).

Each reader follows the set's SOURCE.md: formats, escapes and label schemes differ. Readers
take the data root as an argument and return labelled rows; a missing folder yields nothing,
so a small test folder with only a few sets still trains.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from model.errors import DataError
from model.text import normalise

SPAM = "spam"
TOXIC = "toxic"
LABELS = (SPAM, TOXIC)


@dataclass(frozen=True)
class Row:
    """One labelled text for one label head."""

    text: str
    label: str  # "spam" or "toxic": which head this row trains
    target: int  # 1 = spam/toxic, 0 = clean
    source: str
    group: str  # sub-collection (e.g. YouTube video, official split) for grouped evaluation
    weight: float = 1.0  # annotator agreement, where the set records it


@dataclass(frozen=True)
class Source:
    """A dataset the trainer knows how to read."""

    name: str
    label: str
    files: tuple[str, ...]  # paths relative to the data root, hashed into the metadata
    read: Callable[[Path], Iterator[Row]]


def _csv_rows(path: Path, *, tsv: bool = False) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        if tsv:  # OLID tweets hold bare quotes, so tabs are the only delimiter
            yield from csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            yield from csv.DictReader(handle)


def read_youtube(root: Path) -> Iterator[Row]:
    """YouTube Spam Collection: one CSV per video, CLASS 1 = spam."""
    for path in sorted((root / "youtube-spam-collection").glob("Youtube0*.csv")):
        video = path.stem.split("-", 1)[-1]
        for rec in _csv_rows(path):
            yield Row(rec["CONTENT"], SPAM, int(rec["CLASS"]), "youtube", video)


def read_sms(root: Path) -> Iterator[Row]:
    """SMS Spam Collection: ``label<TAB>text`` lines, no header."""
    path = root / "sms-spam-collection" / "SMSSpamCollection"
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        tag, text = line.split("\t", 1)
        yield Row(text, SPAM, int(tag == "spam"), "sms", "sms")


def read_instagram(root: Path) -> Iterator[Row]:
    """ScamSpot Instagram comments (the superset file), scam = 1; exact repeats dropped."""
    path = root / "instagram-scam-comments" / "comments-rated-plus-reported.csv"
    if not path.exists():
        return
    for rec in _csv_rows(path):
        yield Row(rec["msg"], SPAM, int(rec["scam"]), "instagram", "instagram")


def read_davidson(root: Path) -> Iterator[Row]:
    """Davidson 2017: hate or offensive = 1; weight = share of coders agreeing with the label."""
    path = root / "davidson-hate-offensive" / "labeled_data.csv"
    if not path.exists():
        return
    for rec in _csv_rows(path):
        count = int(rec["count"])
        toxic_votes = int(rec["hate_speech"]) + int(rec["offensive_language"])
        target = int(rec["class"] in ("0", "1"))
        agree = (toxic_votes if target else count - toxic_votes) / count
        yield Row(rec["tweet"], TOXIC, target, "davidson", "davidson", weight=agree)


def read_olid_train(root: Path) -> Iterator[Row]:
    """OLID training set, sub-task A: OFF = 1."""
    path = root / "olid" / "olid-training-v1.0.tsv"
    if not path.exists():
        return
    for rec in _csv_rows(path, tsv=True):
        yield Row(rec["tweet"], TOXIC, int(rec["subtask_a"] == "OFF"), "olid", "train")


def read_olid_test(root: Path) -> Iterator[Row]:
    """OLID official test set A (evaluation only; never used for training)."""
    texts = root / "olid" / "testset-levela.tsv"
    labels = root / "olid" / "labels-levela.csv"
    if not (texts.exists() and labels.exists()):
        return
    gold = dict(
        line.split(",", 1)
        for line in labels.read_text(encoding="utf-8").splitlines()
        if line.strip()
    )
    for rec in _csv_rows(texts, tsv=True):
        yield Row(rec["tweet"], TOXIC, int(gold[rec["id"]].strip() == "OFF"), "olid", "test")


def read_tweeteval_hate(root: Path) -> Iterator[Row]:
    """TweetEval / HatEval 2019 hate (all splits; hate against immigrants or women = 1)."""
    folder = root / "tweeteval-hate" / "hate"
    for split in ("train", "val", "test"):
        text_path = folder / f"{split}_text.txt"
        if not text_path.exists():
            continue
        texts = text_path.read_text(encoding="utf-8").split("\n")
        labels = (folder / f"{split}_labels.txt").read_text(encoding="utf-8").split("\n")
        for text, label in zip(texts, labels, strict=True):
            if text.strip() and label.strip():
                yield Row(text, TOXIC, int(label), "tweeteval_hate", split)


_ESCAPE_RE = re.compile(r"(?:\\+x[0-9a-fA-F]{2})+|\\+u[0-9a-fA-F]{4}|\\+[nrt]|\\+(?=['\"\\])")


def _decode_kaggle(text: str) -> str:
    """Undo the Kaggle insults encoding: outer quotes and literal (sometimes doubled) escapes."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]

    def decode(match: re.Match[str]) -> str:
        chunk = match.group(0)
        if "x" in chunk:
            raw = bytes(int(h, 16) for h in re.findall(r"x([0-9a-fA-F]{2})", chunk))
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        if "u" in chunk:
            return chr(int(chunk[-4:], 16))
        if chunk[-1] in "nrt":
            return " "
        return ""

    return _ESCAPE_RE.sub(decode, text)


def read_kaggle_insults(root: Path) -> Iterator[Row]:
    """Kaggle/Impermium insults, train + test with solutions: Insult = 1."""
    folder = root / "kaggle-insults"
    for name in ("train.csv", "test_with_solutions.csv"):
        path = folder / name
        if not path.exists():
            continue
        for rec in _csv_rows(path):
            yield Row(
                _decode_kaggle(rec["Comment"]),
                TOXIC,
                int(rec["Insult"]),
                "kaggle_insults",
                name.split(".")[0].split("_")[0],
            )


def read_toxic_spans(root: Path) -> Iterator[Row]:
    """SemEval-2021 toxic spans: every post is toxic (positives only, see SOURCE.md)."""
    folder = root / "toxic-spans"
    for name in ("tsd_train.csv", "tsd_trial.csv", "tsd_test.csv"):
        path = folder / name
        if not path.exists():
            continue
        for rec in _csv_rows(path):
            yield Row(rec["text"], TOXIC, 1, "toxic_spans", name)


def read_stormfront(root: Path) -> Iterator[Row]:
    """Stormfront sentences: hate = 1, noHate = 0; relation and idk/skip are left out."""
    folder = root / "stormfront"
    tar_path = folder / "hate-speech-dataset_text-files.tar"
    meta_path = folder / "annotations_metadata.csv"
    if not (tar_path.exists() and meta_path.exists()):
        return
    labels = {rec["file_id"]: rec["label"] for rec in _csv_rows(meta_path)}
    with tarfile.open(tar_path) as archive:
        for member in archive:
            if not (member.isfile() and member.name.startswith("all_files/")):
                continue
            file_id = member.name.rsplit("/", 1)[-1].removesuffix(".txt")
            label = labels.get(file_id)
            if label not in ("hate", "noHate"):
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            text = io.TextIOWrapper(handle, encoding="utf-8").read()
            yield Row(text, TOXIC, int(label == "hate"), "stormfront", "stormfront")


def read_jigsaw(root: Path) -> Iterator[Row]:
    """Jigsaw toxic-comment sample: any of the six labels = 1."""
    path = root / "jigsaw-toxic-sample" / "train_sample.csv"
    if not path.exists():
        return
    names = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
    for rec in _csv_rows(path):
        target = int(any(rec[n] == "1" for n in names))
        yield Row(rec["comment_text"], TOXIC, target, "jigsaw", "jigsaw")


def read_moderator_labels(path: Path) -> Iterator[Row]:
    """Moderators' decisions exported as JSONL; each line labels both heads.

    Any unreadable file or line is a DataError naming the file and line, never a traceback."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1]
        raise DataError(f"{path}: not UTF-8 text (byte {byte!r}); save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read labels ({exc.strerror or exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text = rec["text"]
            spam, toxic = rec["spam"], rec["toxic"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}:{number}: not a moderator label ({exc})") from None
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}:{number}: text must be a non-empty string")
        # bool is an int in Python; a label file says 0 or 1.
        if any(type(v) is not int or v not in (0, 1) for v in (spam, toxic)):
            raise DataError(f"{path}:{number}: spam and toxic must be 0 or 1")
        yield Row(text, SPAM, spam, "moderator", "moderator")
        yield Row(text, TOXIC, toxic, "moderator", "moderator")


SOURCES: tuple[Source, ...] = (
    Source(
        "youtube",
        SPAM,
        tuple(
            f"youtube-spam-collection/Youtube0{i}-{v}.csv"
            for i, v in enumerate(("Psy", "KatyPerry", "LMFAO", "Eminem", "Shakira"), 1)
        ),
        read_youtube,
    ),
    Source("sms", SPAM, ("sms-spam-collection/SMSSpamCollection",), read_sms),
    Source(
        "instagram",
        SPAM,
        ("instagram-scam-comments/comments-rated-plus-reported.csv",),
        read_instagram,
    ),
    Source("davidson", TOXIC, ("davidson-hate-offensive/labeled_data.csv",), read_davidson),
    Source("olid", TOXIC, ("olid/olid-training-v1.0.tsv",), read_olid_train),
    Source(
        "tweeteval_hate",
        TOXIC,
        tuple(
            f"tweeteval-hate/hate/{s}_{k}.txt"
            for s in ("train", "val", "test")
            for k in ("text", "labels")
        ),
        read_tweeteval_hate,
    ),
    Source(
        "kaggle_insults",
        TOXIC,
        ("kaggle-insults/train.csv", "kaggle-insults/test_with_solutions.csv"),
        read_kaggle_insults,
    ),
    Source(
        "toxic_spans",
        TOXIC,
        tuple(f"toxic-spans/tsd_{s}.csv" for s in ("train", "trial", "test")),
        read_toxic_spans,
    ),
    Source(
        "stormfront",
        TOXIC,
        ("stormfront/hate-speech-dataset_text-files.tar", "stormfront/annotations_metadata.csv"),
        read_stormfront,
    ),
    Source("jigsaw", TOXIC, ("jigsaw-toxic-sample/train_sample.csv",), read_jigsaw),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


def dedupe_key(text: str) -> str:
    """Key under which two texts count as the same comment: the same once normalised as the
    model sees them (markup and entities decoded, links and handles as placeholders), case,
    spacing and punctuation ignored. Keyed on the raw text, "Check this video<br />" and
    "Check this video" were different comments, and 172 YouTube test rows had a copy in
    their training split."""
    return re.sub(r"[\W_]+", "", normalise(text).lower())


def load_rows(root: Path, sources: Iterable[str] | None = None) -> list[Row]:
    """Read the named sources (default: all) from ``root``; missing folders are skipped."""
    wanted = set(SOURCE_NAMES if sources is None else sources)
    unknown = wanted - set(SOURCE_NAMES)
    if unknown:
        raise DataError(f"unknown sources: {sorted(unknown)}")
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    rows: list[Row] = []
    for source in SOURCES:
        if source.name in wanted:
            rows.extend(source.read(root))
    return rows


def dedupe(rows: Iterable[Row]) -> list[Row]:
    """Drop repeated texts per label head, and every copy of a text whose labels conflict."""
    first: dict[tuple[str, str], Row] = {}
    conflicted: set[tuple[str, str]] = set()
    for row in rows:
        key = (row.label, dedupe_key(row.text))
        if not key[1]:
            key = (row.label, row.text)
        seen = first.get(key)
        if seen is None:
            first[key] = row
        elif seen.target != row.target and row.source != "moderator":
            conflicted.add(key)
        elif row.source == "moderator":
            first[key] = row  # a moderator's decision overrides the public label
            conflicted.discard(key)
    return [row for key, row in first.items() if key not in conflicted]


def file_hashes(root: Path, sources: Iterable[str] | None = None) -> dict[str, str]:
    """Return SHA-256 of every data file the named sources read, keyed by relative path."""
    wanted = set(SOURCE_NAMES if sources is None else sources)
    hashes: dict[str, str] = {}
    for source in SOURCES:
        if source.name not in wanted:
            continue
        for rel in source.files:
            path = root / rel
            if path.exists():
                hashes[rel] = sha256_file(path)
    return hashes


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def toxic_span_word_counts(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Count, per lower-cased word of the toxic-spans posts, how often raters marked it toxic.

    Returns ``(marked, seen)``: occurrences inside a majority toxic span, and all occurrences.
    """
    marked: dict[str, int] = {}
    seen: dict[str, int] = {}
    for name in ("tsd_train.csv", "tsd_trial.csv", "tsd_test.csv"):
        path = root / "toxic-spans" / name
        if not path.exists():
            continue
        for rec in _csv_rows(path):
            offsets = set(json.loads(rec["spans"]))
            for match in re.finditer(r"\w+", rec["text"]):
                word = match.group(0).lower()
                seen[word] = seen.get(word, 0) + 1
                if match.start() in offsets:
                    marked[word] = marked.get(word, 0) + 1
    return marked, seen


# Clean comments from the toxicity sets that double as "not spam" examples for the spam head.
# The spam sets' clean rows are SMS chat and short YouTube/Instagram remarks, so without these
# the spam head mistakes ordinary long-form discussion ("thanks for the explanation") for spam.
HAM_DONORS = ("kaggle_insults", "jigsaw", "olid")
_LINKISH_RE = re.compile(r"https?://|www\.|<a |\bURL\b|\.com\b", re.IGNORECASE)


def with_comment_ham(rows: list[Row]) -> list[Row]:
    """Add non-toxic, link-free comments from discussion sets as spam-head negatives."""
    extra = [
        Row(r.text, SPAM, 0, "comment_ham", r.source)
        for r in rows
        if r.label == TOXIC
        and r.target == 0
        and r.source in HAM_DONORS
        and not _LINKISH_RE.search(r.text)
    ]
    return rows + extra
