"""What `era-llm-eval`'s two paths share (`era_llm_app.evaluate` for checkpoints,
`era_llm_app.run_eval` for compact-trainer runs): the unbiased pass@k, reading a set and
scoring one set's responses."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from era_core.runlog import atomic_write_text
from era_llm.verify import MissingFieldError, math_eval_item
from era_llm_app.jsonl import read_objects

# (responses, reference) -> (grades, mean accuracy, {k: pass@k})
Score = Callable[[list[str], str], tuple[list[float], float, dict[int, float]]]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    >>> pass_at_k(4, 0, 2), pass_at_k(4, 4, 1), pass_at_k(4, 1, 4)
    (0.0, 1.0, 1.0)
    >>> round(pass_at_k(4, 1, 2), 4)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    0.5
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def load_items(path: str, limit: int | None) -> list[tuple[str, str]]:
    """(question, reference) pairs; a missing file or field is a clear error."""
    items = []
    for lineno, row in read_objects(path):
        try:
            items.append(math_eval_item(row))
        except MissingFieldError as exc:
            raise ValueError(f"--data {path}: line {lineno}: {exc}") from None
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise ValueError(f"--data {path}: no rows")
    return items


def score_set(
    items: list[tuple[str, str]],
    responses_path: Path,
    *,
    prompt: Callable[[str], str],
    generate: Callable[[list[str]], list[str]],
    score: Score,
    batch_size: int,
    progress: bool = True,
) -> tuple[float, dict[int, float], float]:
    """Answer and grade one set: its questions (``prompt`` of each) in batches of
    ``batch_size`` through ``generate`` (the same number of responses per prompt, in prompt
    order), each question's responses graded by ``score``; every response and grade is written
    to ``responses_path`` (JSON lines). Returns the mean accuracy (%), pass@k (%) for each k
    ``score`` reports, and the seconds taken."""
    t0 = time.perf_counter()
    records, means, passes = [], [], {}
    bar = tqdm(total=len(items), desc=responses_path.stem, disable=not progress, file=sys.stderr)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        texts = generate([prompt(question) for question, _ in batch])
        n = len(texts) // len(batch)
        for j, (question, reference) in enumerate(batch):
            responses = texts[j * n : (j + 1) * n]
            grades, mean, by_k = score(responses, reference)
            means.append(mean)
            for k, value in by_k.items():
                passes.setdefault(k, []).append(value)
            records.append(
                {"question": question, "reference": reference, "responses": responses,
                 "grades": grades}
            )  # fmt: skip
        bar.update(len(batch))
    bar.close()
    atomic_write_text(responses_path, "".join(json.dumps(r) + "\n" for r in records))
    at_k = {k: 100.0 * float(np.mean(v)) for k, v in passes.items()}
    return 100.0 * float(np.mean(means)), at_k, time.perf_counter() - t0
