"""era-llm-eval: pass@k against enumeration, grading of real items, the pipeline and its table."""

import csv
import itertools
import json
import math
from pathlib import Path

import pytest
from era_llm_app.evaluate import main, pass_at_k, score_item
from hypothesis import given
from hypothesis import strategies as st

from era_llm.toy import char_tokenizer, tiny_causal_lm

MATH_EVAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "math-eval"
needs_data = pytest.mark.skipif(not MATH_EVAL.is_dir(), reason=f"no math-eval data at {MATH_EVAL}")


@given(
    st.integers(1, 7).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n)))
)
def test_pass_at_k_equals_enumeration_over_subsets(nck):
    n, c, k = nck
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    naive = sum(any(s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(naive)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="n=2, c=3"):
        pass_at_k(2, 3, 1)


@needs_data
def test_score_item_grades_a_real_math500_item():
    row = json.loads((MATH_EVAL / "math500.jsonl").open().readline())
    from era_llm.verify import math_eval_item

    _, reference = math_eval_item(row)  # (3, pi/2) in polar coordinates
    responses = [
        r"So $(r, \theta) = \boxed{\left(3, \frac{\pi}{2}\right)}$.",
        r"\boxed{(3, \pi)}",
        "no boxed answer",
        r"\boxed{(3,\tfrac{\pi}{2})}",
    ]
    grades, mean_k, pass_k = score_item(responses, reference)
    assert grades == [1.0, 0.0, 0.0, 1.0]
    assert mean_k == 0.5 and pass_k == 1.0


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tok = char_tokenizer()
    tiny_causal_lm(tok, seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@needs_data
def test_eval_pipeline_on_real_items_writes_tables(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    data = [
        str(MATH_EVAL / "math500.jsonl"),
        str(MATH_EVAL / "aime24.jsonl"),
        str(MATH_EVAL / "olympiadbench.jsonl"),
    ]
    code = main(
        [
            "--model",
            str(tiny_checkpoint),
            "--data",
            *data,
            "--mode",
            "paper",
            "--k",
            "3",
            "--limit",
            "2",
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["dataset"] for r in rows] == ["math500", "aime24", "olympiadbench", "Avg"]
    by_name = {r["dataset"]: r for r in rows}
    assert by_name["math500"]["mode"] == "greedy" and by_name["math500"]["k"] == "1"
    assert by_name["aime24"]["mode"].startswith("sampled") and by_name["aime24"]["k"] == "3"
    for r in rows:
        assert 0.0 <= float(r["mean_at_k"]) <= float(r["pass_at_k"]) <= 100.0
    # The random tiny model never boxes the right answer: every grade is 0, and the table
    # agrees with the per-response records.
    for name, k in (("math500", 1), ("aime24", 3), ("olympiadbench", 1)):
        records = [json.loads(line) for line in (out / "responses" / f"{name}.jsonl").open()]
        assert len(records) == 2
        assert all(len(r["responses"]) == k and r["grades"] == [0.0] * k for r in records)
        assert float(by_name[name]["mean_at_k"]) == 0.0
    md = (out / "results.md").read_text()
    assert "| math500 | 2 | greedy | 1 | 0.0 | 0.0 |" in md
    assert "| aime24 | 2 | sampled (T=1) | 3 |" in md
    assert json.loads((out / "results.json").read_text())["config"]["k"] == 3
    assert "| Avg |" in capsys.readouterr().out


def test_eval_bad_input_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "no answer here"}\n')
    cases = [
        (["--model", str(tmp_path / "missing"), "--data", str(bad)], "no such directory"),
        (
            ["--model", str(tiny_checkpoint), "--data", str(tmp_path / "nope.jsonl")],
            "nope.jsonl: no such file",
        ),
        (["--model", str(tiny_checkpoint), "--data", str(bad)], "line 2: row has no reference"),
        (["--model", str(tiny_checkpoint), "--data", str(bad), "--k", "0"], "--k 0 must be >= 1"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(tmp_path / "o")])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_eval_unreadable_data_and_models_are_one_line_errors(tiny_checkpoint, tmp_path, capsys):
    """Data that is not UTF-8, lines that are not JSON objects, a missing --data, weights that
    are corrupt: exit 2, one line naming the argument and what is wrong, no traceback."""
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"problem": "caf\u00e9", "answer": "1"}\n'.encode("latin-1"))
    listed = tmp_path / "listed.jsonl"
    listed.write_text('{"problem": "1+1?", "answer": "2"}\n[1, 2]\n')
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for file in tiny_checkpoint.iterdir():
        (corrupt / file.name).write_bytes(file.read_bytes())
    weights = next(p for p in corrupt.iterdir() if p.suffix in {".safetensors", ".bin"})
    weights.write_bytes(weights.read_bytes()[:100])
    good = tmp_path / "good.jsonl"
    good.write_text('{"problem": "1+1?", "answer": "2"}\n')
    model = ["--model", str(tiny_checkpoint)]
    cases = [
        ([*model, "--data", str(latin)], "latin.jsonl: not UTF-8 text"),
        ([*model, "--data", str(listed)], "listed.jsonl: line 2 holds a JSON list, not an object"),
        (model, "era-llm-eval-convert"),
        (["--model", str(corrupt), "--data", str(good)], "the checkpoint cannot be loaded"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert exc.value.code == 2, err
        last = err.strip().splitlines()[-1]  # argparse: the usage, then one error line
        assert last.startswith("era-llm-eval: error: ") and message in last, err
        assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------
# A compact-trainer run directory as the model (era_llm_app.run_eval)
# ------------------------------------------------------------------------------------------
TINY_RUN = ["--quick", "--steps", "2", "--warmup-steps", "60", "--eval-size", "12"]
TINY_RUN += ["--no-tensorboard", "--max-digits", "1", "--prompts-per-step", "2"]
TINY_RUN += ["--group-size", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from era_llm_app.cli import main as train_main

    out = tmp_path_factory.mktemp("llm-run") / "run"
    assert train_main(["--out", str(out), *TINY_RUN]) == 0
    return out


@pytest.mark.parametrize(("n", "c"), [(8, 0), (8, 1), (8, 3), (8, 7), (8, 8)])
def test_pass_at_k_from_one_draw_of_eight_equals_the_formula(n, c):
    from era_llm_app.run_eval import PASS_KS, score_run_item

    from era_llm.verify import exact_match_reward

    responses = ["5"] * c + ["4"] * (n - c)
    grades, mean, by_k = score_run_item(responses, "5", exact_match_reward, PASS_KS)
    assert grades == [1.0] * c + [0.0] * (n - c) and mean == c / n
    for k in PASS_KS:
        formula = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert by_k[k] == pytest.approx(formula)


def _eval_run(run, out, *extra):
    assert main(["--model", str(run), "--mode", "sampled", "--out", str(out), *extra]) == 0
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


def test_a_trained_run_dir_is_scored_end_to_end(trained_run, tmp_path):
    heldout = [json.loads(line) for line in (trained_run / "heldout.jsonl").open()]
    assert len(heldout) == 12 and all(set(r) == {"question", "answer"} for r in heldout)
    rows = _eval_run(trained_run, tmp_path / "a", "--seed", "3")
    assert [(r["dataset"], r["k"]) for r in rows] == [
        ("heldout", "1"),
        ("heldout", "4"),
        ("heldout", "8"),
    ]
    passes = [float(r["pass_at_k"]) for r in rows]
    assert passes[0] <= passes[1] <= passes[2] <= 100.0
    assert passes[0] == pytest.approx(float(rows[0]["mean_at_k"]))  # pass@1 = mean accuracy
    records = [json.loads(line) for line in (tmp_path / "a" / "responses" / "heldout.jsonl").open()]
    assert [r["reference"] for r in records] == [r["answer"] for r in heldout]
    assert all(len(r["responses"]) == 8 for r in records)
    # The table agrees with the exact grades of the recorded responses.
    correct = [sum(r["grades"]) for r in records]
    pass8 = 100.0 * sum(c > 0 for c in correct) / len(correct)
    assert passes[2] == pytest.approx(pass8)
    assert all(
        g == float(resp.split("\n", 1)[0].strip() == r["reference"])
        for r in records
        for g, resp in zip(r["grades"], r["responses"], strict=True)
    )
    assert (
        "| heldout | 12 | sampled (T=1, n=8) | 8 |" in (tmp_path / "a" / "results.md").read_text()
    )


def test_same_seed_twice_gives_the_same_numbers(trained_run, tmp_path):
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    first = strip(_eval_run(trained_run, tmp_path / "a", "--seed", "5"))
    again = strip(_eval_run(trained_run, tmp_path / "b", "--seed", "5"))
    assert first == again
    a = (tmp_path / "a" / "responses" / "heldout.jsonl").read_text()
    assert a == (tmp_path / "b" / "responses" / "heldout.jsonl").read_text()


def test_resume_does_not_rewrite_heldout(trained_run, tmp_path):
    from era_llm_app.cli import main as train_main

    from era_core.testing import copy_run

    run = copy_run(trained_run, tmp_path / "again")
    stamp = (run / "heldout.jsonl").stat().st_mtime_ns
    assert train_main(["--out", str(run), "--resume", *TINY_RUN, "--steps", "3"]) == 0
    assert (run / "heldout.jsonl").stat().st_mtime_ns == stamp
