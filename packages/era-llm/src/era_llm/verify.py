"""Verifiable rewards: exact match for synthetic tasks, `math-verify` for real math answers.

A reward is 1.0 for a correct response and 0.0 otherwise (docs/paper.md §3 trains on such
binary, rule-based rewards). Two verifiers:

* `exact_match_reward(response, answer)`: the response, cut at its first newline and stripped,
  must equal the answer string (for the synthetic arithmetic task of `era_llm.toy`).
* `math_reward(response, reference)`: the **last** ``\\boxed{...}`` of the response (found with
  brace matching, `extract_boxed`) is parsed and compared symbolically with the reference by
  the `math-verify` package (numbers, fractions, tuples, sets, equations, percentages).

`math_eval_item(row)` reads a row of the evaluation sets in ``data/math-eval/`` (AIME24/25,
AMC23, MATH500, Minerva, OlympiadBench, GSM8K: each names its question and answer
differently) into ``(question, reference)``.

>>> exact_match_reward("357", "357"), exact_match_reward(" 357\\nmore", "357")
(1.0, 1.0)
>>> extract_boxed(r"so $x = \\boxed{\\frac{1}{2}}$.")
'\\\\frac{1}{2}'
>>> math_reward(r"The answer is \\boxed{0.5}", r"\\frac{1}{2}")
1.0
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MissingFieldError",
    "exact_match_reward",
    "extract_boxed",
    "math_eval_item",
    "math_reward",
    "normalize_reference",
]

_BOX_COMMANDS = ("\\boxed", "\\fbox")


class MissingFieldError(ValueError):
    """A data row lacks the field(s) a verifier needs."""


def exact_match_reward(response: str, answer: str) -> float:
    """1.0 if `response` (first line, stripped) equals `answer` (stripped), else 0.0."""
    first_line = response.split("\n", 1)[0].strip()
    return 1.0 if first_line == str(answer).strip() else 0.0


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in `text`, braces matched.

    Also accepts the brace-less form ``\\boxed 5`` (up to the next space or ``$``). Returns
    None when there is no complete box.

    >>> extract_boxed(r"\\boxed{1} then \\boxed{\\{a, b\\}}")
    '\\\\{a, b\\\\}'
    >>> extract_boxed(r"\\boxed{unclosed") is None
    True
    """
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    while start >= 0:
        cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        rest = text[start + len(cmd) :]
        if rest.startswith(" ") and not rest.lstrip().startswith("{"):
            content = re.split(r"[\s$]", rest.lstrip(), maxsplit=1)[0]
            if content:
                return content
        elif rest.lstrip().startswith("{"):
            body = rest.lstrip()
            depth = 0
            i = 0
            while i < len(body):
                ch = body[i]
                if ch == "\\":  # an escaped brace (\{ or \}) does not count
                    i += 2
                    continue
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        return body[1:i].strip()
                i += 1
        # Incomplete: look for an earlier box.
        start = max(text.rfind(cmd, 0, start) for cmd in _BOX_COMMANDS)
    return None


def _math_verify() -> types.ModuleType:
    try:
        import math_verify
    except ImportError as exc:  # a dependency of era-llm, so only a broken install gets here
        raise ImportError("math_reward needs the `math-verify` package") from exc
    return math_verify


def math_reward(
    response: str,
    reference: str,
    *,
    require_boxed: bool = True,
    timeout_seconds: int = 5,
) -> float:
    """1.0 if the response's final answer equals `reference` symbolically, else 0.0.

    The answer is the last ``\\boxed{...}`` of `response`; with ``require_boxed=False`` a
    response without a box is parsed whole by math-verify (last number / LaTeX expression).
    `reference` is a bare answer (``"27.0"``, ``"\\frac{\\pi}{2}"``, ``"x=3"``); it is read as
    LaTeX math. math-verify's timeouts use signals, so call this from the main thread (or pass
    ``timeout_seconds=0`` to disable them).
    """
    mv = _math_verify()
    boxed = extract_boxed(response)
    if boxed is None and require_boxed:
        return 0.0
    timeout = timeout_seconds if timeout_seconds > 0 else None
    pred_text = f"${boxed}$" if boxed is not None else response
    gold = mv.parse(f"${reference}$", parsing_timeout=timeout)
    pred = mv.parse(pred_text, parsing_timeout=timeout)
    if not gold or not pred:
        return 0.0
    return 1.0 if mv.verify(gold, pred, timeout_seconds=timeout) else 0.0


def normalize_reference(answer: Any) -> str:
    """A reference answer as text: lists (OlympiadBench) joined by ``", "``, numbers str()."""
    if isinstance(answer, list | tuple):
        return ", ".join(str(a).strip().strip("$") for a in answer)
    if isinstance(answer, str) and answer.startswith("[") and answer.endswith("]"):
        try:
            parsed = json.loads(answer.replace("'", '"'))
        except ValueError:
            return answer.strip()
        if isinstance(parsed, list):
            return normalize_reference(parsed)
    return str(answer).strip()


def math_eval_item(row: Mapping[str, Any]) -> tuple[str, str]:
    """``(question, reference answer)`` of one row of a ``data/math-eval`` set.

    Question: ``problem``, else ``question`` (OlympiadBench's ``context``, when present, is
    prepended). Reference, first found: ``final_answer`` (OlympiadBench, a list),
    ``answer`` (GSM8K: the text after ``####``), else the last ``\\boxed{}`` of ``solution``
    (Minerva). Raises `MissingFieldError` naming the missing fields.
    """
    question = row.get("problem") or row.get("question")
    if not question:
        raise MissingFieldError(
            f"row has no question: expected a 'problem' or 'question' field, got {sorted(row)}"
        )
    context = row.get("context")
    if context and str(context) != "None":
        question = f"{context}\n{question}"
    reference: str | None = None
    if row.get("final_answer") not in (None, "", []):
        reference = normalize_reference(row["final_answer"])
    elif row.get("answer") not in (None, ""):
        answer = row["answer"]
        if isinstance(answer, str) and "####" in answer:
            answer = answer.rsplit("####", 1)[1].replace(",", "")
        reference = normalize_reference(answer)
    elif row.get("solution"):
        reference = extract_boxed(str(row["solution"]))
    if reference is None or reference == "":
        raise MissingFieldError(
            "row has no reference answer: expected 'answer', 'final_answer' or a "
            f"\\boxed{{}} in 'solution', got fields {sorted(row)}"
        )
    return str(question), reference
