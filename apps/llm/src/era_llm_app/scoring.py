"""What `era-llm-eval`'s two paths share (`era_llm_app.evaluate` for checkpoints,
`era_llm_app.run_eval` for compact-trainer runs): the unbiased pass@k and reading a set."""

from __future__ import annotations

import math

from era_llm.verify import MissingFieldError, math_eval_item
from era_llm_app.jsonl import read_objects


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
