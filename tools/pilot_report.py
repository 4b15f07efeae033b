"""The pilot criterion scripts' shared output: one line per run, then the verdict."""

from __future__ import annotations


def report(results: list[tuple[str, bool]]) -> int:
    """Print each run's line and whether every run meets the criterion; the exit status 0."""
    for line, _ in results:
        print(line)
    print(f"every run meets the criterion: {all(ok for _, ok in results)}")
    return 0
