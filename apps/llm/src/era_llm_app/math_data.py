"""`era-llm-eval-convert`: a local copy of a math evaluation set into the JSON lines
`era-llm-eval` reads.

The sets of the paper's Table 2 are public but not shipped here (nothing is downloaded at run
time). Get a copy of each from its public source (the table in docs/llm.md, "Evaluation
sets"), as JSON lines, a JSON list, CSV or Parquet, then convert it:

    uv run era-llm-eval-convert path/to/MATH-500/test.jsonl --name math500 --out-dir data/math-eval

Each row is read with `era_llm.verify.math_eval_item` after its keys are lower-cased (so
``Problem`` / ``Answer`` columns work too): the question from ``problem`` or ``question``
(OlympiadBench's ``context`` prepended), the reference from ``final_answer``, ``answer`` (GSM8K:
after ``####``) or the last ``\\boxed{}`` of ``solution``; ``--question-field`` /
``--answer-field`` name other columns. The output has one ``{"question": ..., "answer": ...}``
object per line, written atomically to ``OUT_DIR/<name>.jsonl``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from era_core.runlog import atomic_write_text
from era_llm.verify import MissingFieldError, math_eval_item
from era_llm_app.jsonl import read_objects

DATA_HINT = (
    "The math sets are not shipped: get a local copy of each (public sources in docs/llm.md, "
    "'Evaluation sets') and convert it with era-llm-eval-convert FILE --name NAME --out-dir DIR"
)
FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(row number, row)`` of a JSON-lines, JSON-list, CSV or Parquet file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"INPUT {path}: no such file")
    if suffix == ".jsonl":
        return list(read_objects(path, flag="INPUT"))
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"INPUT {path}: not a UTF-8 JSON file ({error})") from None
        rows = data.get("data", data) if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(
                f"INPUT {path}: expected a JSON list of objects (or {{'data': [...]}})"
            )
        return list(enumerate(rows, 1))
    if suffix == ".csv":
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                return list(enumerate(csv.DictReader(handle), 1))
        except UnicodeDecodeError as error:
            raise ValueError(f"INPUT {path}: not UTF-8 text ({error.reason})") from None
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(
                f"INPUT {path}: reading Parquet needs pyarrow (pip install pyarrow)"
            ) from None
        return list(enumerate(pq.read_table(path).to_pylist(), 1))
    raise ValueError(f"INPUT {path}: unknown format {suffix!r}; valid: {', '.join(FORMATS)}")


def convert_row(
    row: dict[str, Any], question_field: str | None = None, answer_field: str | None = None
) -> dict[str, str]:
    """``{"question", "answer"}`` of one row (see the module docstring for the fields read)."""
    row = {str(key).lower(): value for key, value in row.items()}
    if question_field is not None:
        row["question"] = row.pop(question_field.lower(), None)
        row.pop("problem", None)
    if answer_field is not None:
        row["answer"] = row.pop(answer_field.lower(), None)
        row.pop("final_answer", None)
    question, answer = math_eval_item(row)
    return {"question": question, "answer": answer}


def convert(
    path: Path, out: Path, *, question_field: str | None = None, answer_field: str | None = None
) -> int:
    """Convert ``path`` into ``out`` (JSON lines); returns the number of rows."""
    converted = []
    for number, row in read_rows(path):
        try:
            converted.append(convert_row(row, question_field, answer_field))
        except MissingFieldError as error:
            raise ValueError(f"INPUT {path}: row {number}: {error}") from None
    if not converted:
        raise ValueError(f"INPUT {path}: no rows")
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in converted))
    return len(converted)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="era-llm-eval-convert",
        description="Convert local copies of math evaluation sets into era-llm-eval's JSON lines.",
        epilog="Public sources of the paper's sets: docs/llm.md, 'Evaluation sets'.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help=f"files ({', '.join(FORMATS)})")
    parser.add_argument("--out-dir", required=True, help="where <name>.jsonl is written")
    parser.add_argument(
        "--name", default=None, help="output name for one INPUT (default: the INPUT's file stem)"
    )
    parser.add_argument(
        "--question-field",
        default=None,
        help="column holding the question (default: problem, else question)",
    )
    parser.add_argument(
        "--answer-field",
        default=None,
        help="column holding the answer (default: final_answer, else answer, else the last "
        "\\boxed{} of solution)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.name is not None and len(args.inputs) != 1:
        parser.error(f"--name {args.name!r} names one output; got {len(args.inputs)} INPUTs")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        parser.error(f"--out-dir {out_dir}: is a file, not a directory")
    try:
        plan = [(Path(p), out_dir / f"{args.name or Path(p).stem}.jsonl") for p in args.inputs]
        for path, _ in plan:
            read_rows(path)  # every input is checked before anything is written
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, out in plan:
            rows = convert(
                path, out, question_field=args.question_field, answer_field=args.answer_field
            )
            print(f"{path} -> {out} ({rows} rows)")
    except (ValueError, FileNotFoundError, OSError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
