"""era-llm-train on CPU: a smoke run, exact resume, bad input, GRPO that learns, the comparison."""

import csv
import json

import pytest
import torch
from era_llm_app.cli import main
from transformers import AutoModelForCausalLM

from era_core.runlog import read_jsonl

# A small, fast budget: short warm-up, 8 prompts x 4 responses, 1-2 digit addition.
QUICK = ["--quick", "--eval-size", "16", "--no-tensorboard"]
ENTROPY_KEYS = (
    "frac_below",
    "frac_inside",
    "frac_above",
    "top_entropy_mean",
    "rest_entropy_mean",
    "scale_mean",
)


def test_smoke_run_writes_metrics_checkpoint_model_and_plots(tmp_path):
    out = tmp_path / "run"
    assert main(["--steps", "3", "--out", str(out), "--eval-every", "2", *QUICK]) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        for key in (*ENTROPY_KEYS, "reward_mean", "accuracy", "token_entropy_mean"):
            assert r[key] is not None, key
        assert r["frac_below"] + r["frac_inside"] + r["frac_above"] == pytest.approx(1.0)
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["top_entropy_mean"] >= r["rest_entropy_mean"] >= 0.0
    assert [r.get("eval_accuracy") is not None for r in rows] == [False, True, True]
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(ENTROPY_KEYS) <= set(header)
    warmup = read_jsonl(out / "warmup" / "metrics.jsonl")
    assert warmup[-1]["step"] == 40 and warmup[-1]["eval_accuracy"] is not None
    for name in (
        "DONE",
        "summary.json",
        "config.json",
        "checkpoint.pt",
        "entropy.png",
        "reward.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "entropy.png").stat().st_size > 1000
    model = AutoModelForCausalLM.from_pretrained(out / "model")  # loadable by era-llm-eval
    assert model.config.model_type == "qwen3"
    # A finished run is not silently overwritten.
    with pytest.raises(SystemExit) as exc:
        main(["--steps", "3", "--out", str(out), *QUICK])
    assert exc.value.code == 2


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    # 1-digit sums and a band above the policy's entropy: ERA sharpens correct responses.
    common = [
        *QUICK,
        "--ckpt-every",
        "2",
        "--eval-every",
        "2",
        "--max-digits",
        "1",
        "--warmup-steps",
        "80",
        "--era-low",
        "4",
        "--era-high",
        "5",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    main(["--steps", "4", "--out", str(full), *common])
    main(["--steps", "2", "--out", str(part), *common])
    assert not (part / "DONE").exists() or read_jsonl(part / "metrics.jsonl")[-1]["step"] == 2
    main(["--steps", "4", "--out", str(part), "--resume", *common])

    a = torch.load(full / "checkpoint.pt", weights_only=False)
    b = torch.load(part / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert torch.equal(a["torch_rng"], b["torch_rng"])

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "step_time_s"} for r in rows]

    rows_full = strip(read_jsonl(full / "metrics.jsonl"))
    rows_part = strip(read_jsonl(part / "metrics.jsonl"))
    assert rows_full == rows_part and len(rows_full) == 4
    assert any(r["scale_mean"] != 1.0 for r in rows_full)  # ERA did scale some responses
    with open(part / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_resume_refuses_a_changed_configuration(tmp_path):
    out = tmp_path / "run"
    main(["--steps", "1", "--out", str(out), *QUICK])
    with pytest.raises(SystemExit) as exc:
        main(["--steps", "2", "--out", str(out), "--resume", "--lr", "0.5", *QUICK])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--era-low", "3", "--era-high", "0.45"], "--era-low 3.0 must be < --era-high 0.45"),
        (["--era-low", "1", "--era-high", "1"], "--era-low 1.0 must be < --era-high 1.0"),
        (["--era-k", "1"], "--era-k 1.0 must be > 1"),
        (["--era-k", "0.5"], "--era-k 0.5 must be > 1"),
        (["--model", "/nonexistent/ckpt"], "--model /nonexistent/ckpt: no such directory"),
        (["--group-size", "1"], "--group-size 1 must be >= 2"),
        (["--max-digits", "12"], "max_digits"),
        (["--rollout", "vllm"], "--rollout vllm needs --model"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["--steps", "1", "--out", str(out), *QUICK, *flags])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_data_file_with_missing_field_fails_before_training(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2="}\n')
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        main(["--steps", "1", "--out", str(out), "--data", str(data), *QUICK])
    err = capsys.readouterr().err
    assert "line 2 lacks field(s) ['answer']" in err
    assert not out.exists()


def test_model_path_that_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "run"), "--model", str(tmp_path / "empty"), *QUICK])
    assert "not a checkpoint (no config.json)" in capsys.readouterr().err


def test_grpo_learns_the_synthetic_task(tmp_path):
    """From a short warm-up (~40 %), 20 GRPO steps on 1-digit addition raise held-out accuracy."""
    out = tmp_path / "run"
    main(
        [
            "--steps",
            "20",
            "--out",
            str(out),
            "--no-era",
            "--max-digits",
            "1",
            "--warmup-steps",
            "60",
            "--prompts-per-step",
            "8",
            "--group-size",
            "8",
            "--eval-every",
            "20",
            "--eval-size",
            "64",
            "--no-tensorboard",
            "--lr",
            "3e-4",
        ]
    )
    before = read_jsonl(out / "warmup" / "metrics.jsonl")[-1]["eval_accuracy"]
    rows = read_jsonl(out / "metrics.jsonl")
    after = rows[-1]["eval_accuracy"]
    assert after >= before + 0.1, (before, after)
    first, last = (sum(r["reward_mean"] for r in part) / 5 for part in (rows[:5], rows[-5:]))
    assert last > first, (first, last)


def test_compare_mode_writes_machine_readable_summary(tmp_path):
    out = tmp_path / "cmp"
    args = ["--compare", "--seeds", "0", "--steps", "2", "--out", str(out), *QUICK]
    args += ["--pass-at-k-prompts", "4"]
    assert main(args) == 0
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["grpo", "era", "entropy-bonus"]
    assert all(int(r["steps"]) == 2 and r["tail_top_entropy_mean"] for r in rows)
    for r in rows:  # pass@k of 8 draws on 4 prompts: multiples of 1/32 at k=1, rising with k
        p1, p4, p8 = (float(r[f"pass_at_{k}"]) for k in (1, 4, 8))
        assert 0 <= p1 <= p4 <= p8 <= 1 and abs(p1 * 32 - round(p1 * 32)) < 1e-6, r
        record = out / "pass_at_k" / r["method"] / "seed0" / "pass_at_k.json"
        assert json.loads(record.read_text())["prompts"] == 4
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["aggregate"]) == {"grpo", "era", "entropy-bonus"}
    md = (out / "summary.md").read_text()
    assert "| era |" in md and "compare_entropy.png" in md
    for name in ("compare_entropy.png", "compare_accuracy.png"):
        assert (out / name).stat().st_size > 1000
    bonus = json.loads((out / "entropy-bonus" / "seed0" / "config.json").read_text())
    assert bonus["entropy_bonus_target"] == 0.45 and bonus["era"] is False
    # Started again, complete runs are skipped and the summary is rewritten.
    mtime = (out / "era" / "seed0" / "DONE").stat().st_mtime
    scored = (out / "pass_at_k" / "era" / "seed0" / "pass_at_k.json").stat().st_mtime
    main(args)
    assert (out / "era" / "seed0" / "DONE").stat().st_mtime == mtime
    assert (out / "pass_at_k" / "era" / "seed0" / "pass_at_k.json").stat().st_mtime == scored
    assert "pass@8 (%, sampled)" in (out / "summary.md").read_text()


def test_teacher_forced_logits_reproduce_greedy_generation():
    """Left-padded prompts, position ids and the response slice line up with generate()."""
    from era_llm_app.train import response_logits

    from era_llm.rollout import HFRollout
    from era_llm.toy import char_tokenizer, tiny_causal_lm

    tok = char_tokenizer()
    model = tiny_causal_lm(tok, seed=3)
    roll = HFRollout(model, tok).generate(
        ["1+2=", "12+34=", "7*8="], 2, max_new_tokens=5, greedy=True
    )
    assert roll.prompt_mask[0, 0] == 0  # the short prompts are left-padded
    with torch.no_grad():
        logits = response_logits(model.eval(), roll, slice(None), "cpu")
    mask = roll.response_mask.bool()
    assert mask.any(1).all()
    assert torch.equal(logits.argmax(-1)[mask], roll.response_ids[mask])


@pytest.mark.parametrize("verifier", ["exact", "math"])
def test_training_on_a_data_file(tmp_path, verifier):
    data = tmp_path / "train.jsonl"
    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(5) for b in range(5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    main(
        [
            "--steps",
            "2",
            "--out",
            str(out),
            "--data",
            str(data),
            "--verifier",
            verifier,
            "--max-new-tokens",
            "4",
            *QUICK,
        ]
    )
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in metrics] == [1, 2]
    if verifier == "math":  # the tiny model never writes \boxed{}: no reward, no update
        assert all(r["reward_mean"] == 0.0 and r["groups_kept_frac"] == 0.0 for r in metrics)
    assert (out / "DONE").exists()


def test_run_directory_lifecycle_without_training(tmp_path):
    """`open_run` / checkpoints on `era_core.runs`, with no model trained."""
    import dataclasses
    import random

    import numpy as np
    from era_llm_app.config import TrainConfig
    from era_llm_app.train import load_checkpoint_state, open_run, save_checkpoint

    from era_core.runs import RunError

    cfg = TrainConfig(out=str(tmp_path / "run"))
    run_dir = open_run(cfg)
    assert not run_dir.resumed and (run_dir.path / "config.json").is_file()
    with pytest.raises(RunError, match="already holds a run"):
        open_run(cfg)
    (run_dir.path / "metrics.jsonl").write_text("{}\n")  # killed before its first checkpoint
    restarted = open_run(dataclasses.replace(cfg, resume=True))  # starts again in place
    assert not restarted.resumed
    assert sorted(p.name for p in run_dir.path.iterdir()) == ["config.json"]
    with pytest.raises(RunError, match="no run to resume there"):
        open_run(dataclasses.replace(cfg, out=str(tmp_path / "absent"), resume=True))
    assert not (tmp_path / "absent").exists()
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    rng = np.random.default_rng(0)
    save_checkpoint(run_dir, 5, model, optimizer, rng, 0.25)
    draws = (rng.random(), torch.rand(1), random.random())
    with pytest.raises(
        RunError, match=r"--lr cannot change on --resume \(stored 0.0003, given 0.5\)"
    ):
        open_run(dataclasses.replace(cfg, resume=True, lr=0.5))
    resumed = open_run(dataclasses.replace(cfg, resume=True, steps=400))
    assert resumed.resumed and resumed.config["steps"] == 200  # stored as written at the start
    assert load_checkpoint_state(resumed, model, optimizer, rng) == (5, 0.25)
    assert (rng.random(), torch.rand(1), random.random()) == draws
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(RunError, match="not empty"):
        open_run(dataclasses.replace(cfg, out=str(tmp_path / "other")))


def test_split_task_warms_up_on_varied_valid_answers_and_trains(tmp_path):
    import numpy as np
    from era_llm_app.config import TrainConfig
    from era_llm_app.train import PromptSource, demonstration, make_reward_fn, max_new_tokens

    cfg = TrainConfig(task_op="split", min_digits=2, max_digits=2)
    source, reward = PromptSource(cfg), make_reward_fn(cfg)
    rng = np.random.default_rng(0)
    (problem,) = source.sample(rng, 1)
    shown = {demonstration(source, problem, rng) for _ in range(20)}
    assert len(shown) > 1 and all(reward(d, problem.answer) == 1.0 for d in shown)
    assert reward(problem.answer, problem.answer) == 0.0  # "N" alone is no split
    assert max_new_tokens(cfg, source) == 6  # "ab+cd" and EOS
    addition = PromptSource(TrainConfig())
    (sum_problem,) = addition.sample(rng, 1)
    assert demonstration(addition, sum_problem, rng) == sum_problem.answer
    out = tmp_path / "run"
    assert main(["--task-op", "split", "--steps", "2", "--out", str(out), *QUICK]) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]
    assert json.loads((out / "config.json").read_text())["task_op"] == "split"
