"""GLUE TSV files (SST-2, RTE, MRPC, QNLI), recognised from their header rows."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from svdq_edge.errors import UserError

# header columns -> (task, first text column, second text column or None, label column)
GLUE_LAYOUTS = {
    ("sentence", "label"): ("sst2", "sentence", None, "label"),
    ("index", "sentence1", "sentence2", "label"): ("rte", "sentence1", "sentence2", "label"),
    ("index", "question", "sentence", "label"): ("qnli", "question", "sentence", "label"),
    ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"): ("mrpc", "#1 String", "#2 String", "Quality"),
}
# String labels -> ids, as the GLUE fine-tuned checkpoints order them.
LABEL_IDS = {"entailment": 0, "not_entailment": 1}


class DataError(UserError, ValueError):
    """A data file is missing or malformed; the message is one line naming it."""


@dataclass(frozen=True)
class TextDataset:
    task: str
    text_a: list[str]
    text_b: list[str] | None
    labels: list[int]
    path: str

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> TextDataset:
        if n is None or n >= len(self):
            return self
        tb = None if self.text_b is None else self.text_b[:n]
        return TextDataset(self.task, self.text_a[:n], tb, self.labels[:n], self.path)


def read_glue_tsv(path: str | Path, limit: int | None = None, label2id: dict[str, int] | None = None) -> TextDataset:
    """The rows of a GLUE TSV (a UTF-8 byte-order mark is allowed, as MRPC's files have one).

    Text labels (RTE's, QNLI's "entailment"/"not_entailment") become ids through the model's `label2id` when it
    names them, whatever order the model was trained with; a model with generic names (LABEL_0, ...) gets GLUE's
    order; a text label the model does not name is refused (the wrong task). Numeric labels are kept.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    ids = label_ids(label2id)
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = tuple(h.strip() for h in next(reader, ()))
        if header not in GLUE_LAYOUTS:
            known = "; ".join(" ".join(h) for h in GLUE_LAYOUTS)
            raise DataError(f"{path}: unrecognised header {' '.join(header)!r} (known: {known})")
        task, col_a, col_b, col_label = GLUE_LAYOUTS[header]
        ia, il = header.index(col_a), header.index(col_label)
        ib = None if col_b is None else header.index(col_b)
        text_a, text_b, labels = [], [] if ib is not None else None, []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
            text_a.append(row[ia].strip())
            if ib is not None:
                text_b.append(row[ib].strip())
            labels.append(_label(row[il].strip(), ids, path, lineno))
    if not labels:
        raise DataError(f"{path}: no rows")
    return TextDataset(task, text_a, text_b, labels, str(path)).head(limit)


def label_ids(label2id: dict[str, int] | None) -> dict[str, int]:
    """Text label (lower case) -> id: the model's own names when it has them, GLUE's order when its names are
    generic (LABEL_0, ...) or unknown."""
    named = {k.lower(): int(v) for k, v in (label2id or {}).items() if not k.upper().startswith("LABEL_")}
    return named or dict(LABEL_IDS)


def _label(value: str, ids: dict[str, int], path: Path, lineno: int) -> int:
    if value.lower() in ids:
        return ids[value.lower()]
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}:{lineno}: unknown label {value!r}: neither an integer id nor one of the model's "
                        f"labels ({', '.join(sorted(ids))})") from None


def read_text_ids(tokenizer, path: str | Path, max_tokens: int | None = None):
    """Token ids int64 [n] of a whole plain text file (e.g. WikiText-2 raw), no special tokens added."""
    text = Path(path).read_text(encoding="utf-8")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
    return ids if max_tokens is None else ids[:max_tokens]
