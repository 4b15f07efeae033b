"""era-llm-eval-convert: local copies of evaluation sets into the JSON lines era-llm-eval reads."""

import csv
import json
from pathlib import Path

import pytest
from era_llm_app.math_data import convert_row, main

from era_llm.verify import math_eval_item

MATH_EVAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "math-eval"


def test_rows_in_the_shapes_public_copies_come_in():
    assert convert_row({"Problem": "1+1?", "Answer": "2"}) == {"question": "1+1?", "answer": "2"}
    gsm = {"question": "q", "answer": "so #### 1,234"}
    assert convert_row(gsm) == {"question": "q", "answer": "1234"}
    minerva = {"problem": "p", "solution": r"thus \boxed{42}."}
    assert convert_row(minerva) == {"question": "p", "answer": "42"}
    custom = {"prompt": "p", "target": "7", "answer": "ignored"}
    assert convert_row(custom, "prompt", "target") == {"question": "p", "answer": "7"}


def test_jsonl_json_and_csv_inputs_convert_to_the_same_rows(tmp_path):
    rows = [{"Problem": "1+1?", "Answer": "2"}, {"Problem": "2+3?", "Answer": "5"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.json").write_text(json.dumps({"data": rows}))
    with (tmp_path / "c.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Problem", "Answer"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    inputs = [str(tmp_path / n) for n in ("a.jsonl", "b.json", "c.csv")]
    assert main([*inputs, "--out-dir", str(out)]) == 0
    texts = {p.name: p.read_text() for p in out.iterdir()}
    assert sorted(texts) == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert len(set(texts.values())) == 1
    read = [math_eval_item(json.loads(line)) for line in texts["a.jsonl"].splitlines()]
    assert read == [("1+1?", "2"), ("2+3?", "5")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"Problem": "p"}\n', "row 1: row has no reference answer"),
        (b"[1]\n", "line 1 holds a JSON list, not an object"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b"", "no rows"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, capsys, content, message):
    (tmp_path / "x.jsonl").write_bytes(content)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "x.jsonl"), "--out-dir", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "x.jsonl").exists()


@pytest.mark.skipif(not MATH_EVAL.is_dir(), reason=f"no math-eval data at {MATH_EVAL}")
def test_the_paper_sets_convert_and_keep_their_answers(tmp_path):
    files = sorted(MATH_EVAL.glob("*.jsonl"))
    assert main([*map(str, files), "--out-dir", str(tmp_path)]) == 0
    for original in files:
        converted = (tmp_path / original.name).read_text().splitlines()
        source = [json.loads(line) for line in original.read_text().splitlines() if line.strip()]
        assert len(converted) == len(source)
        assert [math_eval_item(json.loads(c)) for c in converted] == [
            math_eval_item(r) for r in source
        ]
