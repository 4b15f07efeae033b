"""Verifiers: exact match, boxed extraction, math-verify equivalence, real eval-set rows."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from era_llm.verify import (
    MissingFieldError,
    exact_match_reward,
    extract_boxed,
    math_eval_item,
    math_reward,
    normalize_reference,
)

MATH_EVAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "math-eval"


@given(st.integers(min_value=0, max_value=10**12))
def test_exact_match_accepts_answer_and_rejects_any_other_number(n):
    assert exact_match_reward(str(n), str(n)) == 1.0
    assert exact_match_reward(f"  {n} \ntrailing text", str(n)) == 1.0
    assert exact_match_reward(str(n + 1), str(n)) == 0.0
    assert exact_match_reward(str(n) + "0", str(n)) == 0.0
    assert exact_match_reward("", str(n)) == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The answer is $\boxed{42}$.", "42"),
        (r"\boxed{1} first, finally \boxed{\frac{3}{4}}", r"\frac{3}{4}"),
        (r"nested \boxed{\sqrt{\frac{1}{2}}} end", r"\sqrt{\frac{1}{2}}"),
        (r"a set \boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\fbox{7}", "7"),
        (r"\boxed 5 dollars", "5"),
        (r"\boxed{12} and then \boxed{unclosed", "12"),
        ("no box at all: 42", None),
        (r"\boxed{", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("response", "reference", "reward"),
    [
        (r"So the total is \boxed{27}.", "27.0", 1.0),  # AMC's float references
        (r"\boxed{0.5}", r"\frac{1}{2}", 1.0),
        (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", 1.0),
        (r"\boxed{(3, \frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", 1.0),  # MATH500 #0
        (r"\boxed{3}", "x=3", 1.0),
        (r"\boxed{\{3, 2\}}", "2, 3", 1.0),
        (r"\boxed{205}", "204", 0.0),
        (r"\boxed{\frac{1}{3}}", r"\frac{1}{2}", 0.0),
        ("the answer is 27", "27", 0.0),  # no box: not accepted by default
        (r"\boxed{}", "27", 0.0),
    ],
)
def test_math_reward(response, reference, reward):
    assert math_reward(response, reference) == reward


def test_math_reward_without_box_when_allowed():
    assert math_reward("the answer is 27", "27", require_boxed=False) == 1.0
    assert math_reward("the answer is 28", "27", require_boxed=False) == 0.0


def test_normalize_reference():
    assert normalize_reference(["2"]) == "2"
    assert normalize_reference(["$1$", "$2$"]) == "1, 2"
    assert normalize_reference("['5']") == "5"
    assert normalize_reference(27.0) == "27.0"


def test_math_eval_item_field_variants():
    assert math_eval_item({"problem": "p", "answer": "204"}) == ("p", "204")
    assert math_eval_item({"question": "q", "answer": "A\n#### 1,234"}) == ("q", "1234")
    assert math_eval_item({"problem": "p", "solution": r"so \boxed{1.6} cm"}) == ("p", "1.6")
    assert math_eval_item({"question": "q", "context": "c", "final_answer": ["2"]}) == (
        "c\nq",
        "2",
    )
    with pytest.raises(MissingFieldError, match="question"):
        math_eval_item({"answer": "1"})
    with pytest.raises(MissingFieldError, match="reference answer"):
        math_eval_item({"problem": "p", "solution": "no box"})


SETS = [
    "aime24",
    "aime25",
    "amc23",
    "math500",
    "minerva_math",
    "olympiadbench",
    "gsm8k",
]


@pytest.mark.skipif(not MATH_EVAL.is_dir(), reason=f"no math-eval data at {MATH_EVAL}")
@pytest.mark.parametrize("name", SETS)
def test_real_rows_parse_and_reference_verifies_against_itself(name):
    with open(MATH_EVAL / f"{name}.jsonl") as f:
        rows = [json.loads(line) for _, line in zip(range(3), f, strict=False)]
    for row in rows:
        question, reference = math_eval_item(row)
        assert len(question) > 10
        # A response boxing the reference is graded correct; a wrong number is not.
        assert math_reward(rf"Thus \boxed{{{reference}}}.", reference) == 1.0, reference
        assert math_reward(r"Thus \boxed{123456789}.", reference) == 0.0, reference
