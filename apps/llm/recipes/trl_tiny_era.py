"""ERA in TRL's GRPOTrainer on CPU with a tiny model built in code (no downloads).

    uv run --package era-llm --extra trl python apps/llm/recipes/trl_tiny_era.py --steps 4

On GPU with a real checkpoint: ``--model PATH`` (a local directory) and a larger ``--steps``.
"""

from __future__ import annotations

import argparse
import tempfile

from datasets import Dataset
from trl import GRPOConfig

from era_llm.era import ERAConfig
from era_llm.integrations.trl import ERAGRPOTrainer
from era_llm.toy import ArithmeticTask, char_tokenizer, tiny_causal_lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", default=None, help="local checkpoint (default: tiny, in code)")
    paper = ERAConfig()
    parser.add_argument("--era-low", type=float, default=paper.low)
    parser.add_argument("--era-high", type=float, default=paper.high)
    parser.add_argument("--era-k", type=float, default=paper.k)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    try:
        flags = {"low": "--era-low", "high": "--era-high", "k": "--era-k"}
        era = ERAConfig.checked(flags, low=args.era_low, high=args.era_high, k=args.era_k)
    except ValueError as err:
        parser.error(str(err))
    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model)
    else:
        tok = char_tokenizer()
        model = tiny_causal_lm(tok)
    import numpy as np

    task = ArithmeticTask(op="+", min_digits=1, max_digits=2)
    problems = task.sample(np.random.default_rng(0), 64)
    data = Dataset.from_dict(
        {"prompt": [p.prompt for p in problems], "answer": [p.answer for p in problems]}
    )

    def reward(completions, answer, **kwargs):
        return [float(c.strip().startswith(a)) for c, a in zip(completions, answer, strict=True)]

    out = args.out or tempfile.mkdtemp(prefix="era-trl-")
    trainer = ERAGRPOTrainer(
        model=model,
        processing_class=tok,
        reward_funcs=reward,
        train_dataset=data,
        args=GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=8,
            num_generations=8,
            max_completion_length=8,
            max_steps=args.steps,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            bf16=False,
        ),
        era_config=era,
    )
    trainer.train()
    for row in trainer.state.log_history:
        if "era/frac_inside" in row:
            print({k: round(v, 4) for k, v in row.items() if k.startswith(("era/", "reward"))})


if __name__ == "__main__":
    main()
