"""The console scripts: ``era-llm-train`` (one run, or ``--compare``), ``era-llm-eval`` and
``era-llm-eval-convert``.

This module only parses and dispatches: a training run is `era_llm_app.train.train`, the
comparison `era_llm_app.compare.run_comparison`, the evaluation `era_llm_app.evaluate`, the
conversion of evaluation sets `era_llm_app.math_data`. Bad input
(a ValueError, a missing file, an existing run, a missing optional dependency) becomes one line
on stderr and exit code 2.
"""

from __future__ import annotations

import sys

from era_llm_app import evaluate, math_data
from era_llm_app.compare import run_comparison
from era_llm_app.config import build_parser, compare_options, config_from_args
from era_llm_app.train import train

__all__ = ["convert_main", "eval_main", "main"]


def main(argv: list[str] | None = None) -> int:
    """``era-llm-train``: `train` one configuration, or `run_comparison` with ``--compare``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    comparison = compare_options(args)
    try:
        if comparison.compare:
            run_comparison(cfg, comparison.seeds, pass_at_k_prompts=comparison.pass_at_k_prompts)
        else:
            train(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        parser.error(str(exc))
    print(f"done: {cfg.out}")
    return 0


def eval_main(argv: list[str] | None = None) -> int:
    """``era-llm-eval`` (see `era_llm_app.evaluate`)."""
    return evaluate.main(argv)


def convert_main(argv: list[str] | None = None) -> int:
    """``era-llm-eval-convert`` (see `era_llm_app.math_data`)."""
    return math_data.main(argv)


if __name__ == "__main__":
    sys.exit(main())
