"""What each domain runs (budgets fixed here, before any outcome was seen) and how it is summarised.

Budgets (`BUDGETS`):

* ``quick``: the README's main command on a 2-core CPU, about 15 minutes in all. Each
  comparison uses 2 seeds. These numbers were set from measured run *times*, never from which
  method won.
* ``smoke``: the end-to-end test's budget (same code path, seconds per run).
* ``full``: the paper-scale presets of each domain app, for a GPU machine with the real data.

Every run is a domain app's own command; this module only chooses the arguments and reads the
files the apps write (``metrics.jsonl``, ``summary.csv``) to build the report's tables and
figures. No domain logic lives here.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
from pathlib import Path

from .report import Section, markdown_table, mean_std, paper_numbers, pm
from .runner import Run, RunResult

APP_MODULES = {"control": "era_control_app", "vision": "era_vision_app", "llm": "era_llm_app"}
# How to install one domain's app without uv: build the workspace's wheels, then pip.
INSTALL = {
    domain: "uv build --all-packages --wheel --out-dir dist && "
    f'pip install --find-links dist "era-reproduce[{domain}]"'
    for domain in ("control", "vision", "llm")
}

BUDGETS = {
    "quick": {
        # SAC vs SAC-ERA, dmc/cartpole-swingup, the app's CPU preset (2x256, 1 update/step).
        "control": {"env": "dmc/cartpole-swingup", "steps": 6000, "seeds": 2, "expected_s": 200},
        # resnet18 on the embedded digits, --quick recipe; baseline vs ERA.
        "vision": {"arms": ["digits-baseline", "digits-era"], "seeds": [0, 1], "expected_s": 200},
        # GRPO vs GRPO+ERA vs adaptive entropy bonus on the synthetic task. The app's
        # recommended comparison settings (a longer warm-up; band floor raised to 0.8 because
        # the toy's 2-4-token answers start near 0.87 nats and never reach the paper's 0.45),
        # with fewer GRPO steps to fit the quarter hour.
        "llm": {
            "steps": 100,
            "seeds": [0, 1],
            "expected_s": 300,
            "extra": [
                *("--warmup-steps", "600", "--lr", "5e-4", "--era-low", "0.8"),
                *("--eval-every", "25"),
            ],
        },
    },
    "smoke": {
        "control": {
            "env": "dmc/cartpole-swingup",
            "steps": 800,
            "seeds": 2,
            "expected_s": 60,
            "extra": [
                *("--log-interval", "200", "--eval-interval", "400"),
                *("--checkpoint-interval", "400"),
            ],
        },
        "vision": {
            "arms": ["digits-baseline", "digits-era"],
            "seeds": [0, 1],
            "expected_s": 40,
            "extra": ["--epochs", "1", "--limit-train-batches", "3", "--limit-val-batches", "2"],
        },
        "llm": {
            "steps": 2,
            "seeds": [0, 1],
            "expected_s": 40,
            "extra": ["--warmup-steps", "20", "--eval-size", "8"],
        },
    },
}

# The control app's preset the quick and smoke budgets run (its algorithms are compared).
CONTROL_PRESET = "cpu-cartpole"
CONTROL_MODULE, CONTROL_SCRIPT = "era_control_app.train", "era-control-train"

# --full: the paper-scale preset of each domain (override with --preset).
FULL_PRESETS = {"control": "dmc-dog-humanoid", "vision": "table1-cifar10", "llm": "paper"}


def quick_budget_name(smoke: bool) -> str:
    if smoke or os.environ.get("ERA_REPRODUCE_BUDGET") == "smoke":
        return "smoke"
    return "quick"


# ---------------------------------------------------------------------------------------------
# runs


def runs_for(domain: str, out: Path, *, budget: str, args: argparse.Namespace) -> list[Run]:
    if budget == "full":
        return _full_runs(domain, out, args)
    b = BUDGETS[budget][domain]
    extra = list(b.get("extra", []))
    if domain == "control":
        argv = ["--env", b["env"], "--config", CONTROL_PRESET]
        argv += ["--steps", str(b["steps"]), "--seeds", str(b["seeds"]), "--no-progress", *extra]
        return _control_runs(CONTROL_PRESET, out, argv, b["expected_s"], per_env=False)
    if domain == "vision":
        argv = ["--preset", "digits-compare", "--quick", "--arms", *b["arms"], "--seeds"]
        argv += [str(s) for s in b["seeds"]] + ["--out", str(out), "--no-progress", *extra]
        return [
            Run(
                "vision",
                "digits-compare",
                "era_vision_app.train",
                "era-vision-train",
                tuple(argv),
                out,
                b["expected_s"],
            )
        ]
    if domain == "llm":
        argv = ["--compare", "--seeds", *[str(s) for s in b["seeds"]], "--steps", str(b["steps"])]
        argv += ["--out", str(out), "--no-tensorboard", *extra]
        return [
            Run(
                "llm",
                "grpo-vs-era",
                "era_llm_app.cli",
                "era-llm-train",
                tuple(argv),
                out,
                b["expected_s"],
            )
        ]
    raise ValueError(f"unknown domain {domain!r}")


def _full_runs(domain: str, out: Path, args: argparse.Namespace) -> list[Run]:
    preset = args.preset or FULL_PRESETS[domain]
    if domain == "control":
        return _control_runs(preset, out, ["--config", preset], 3600.0, per_env=True)
    if domain == "vision":
        argv = ["--preset", preset, "--data-dir", str(args.vision_data), "--out", str(out)]
        return [
            Run(
                "vision",
                preset,
                "era_vision_app.train",
                "era-vision-train",
                tuple(argv),
                out,
                3600.0,
            )
        ]
    argv = ["--compare", "--model", str(args.llm_model), "--rollout", "vllm", "--out", str(out)]
    if args.llm_data:
        argv += ["--data", str(args.llm_data)]
    return [Run("llm", "grpo-vs-era", "era_llm_app.cli", "era-llm-train", tuple(argv), out, 3600.0)]


def _control_runs(
    preset: str, out: Path, argv: list[str], expected_s: float, *, per_env: bool
) -> list[Run]:
    """One ``era-control-train`` run per algorithm of the control app's ``preset`` (and, with
    ``per_env``, per environment of it): the preset is the data, the app names the algorithms.
    Without the control app, one run of the preset that reports the app missing."""
    try:
        from era_control_app.presets import load_preset
    except ImportError:
        return [Run("control", preset, CONTROL_MODULE, CONTROL_SCRIPT, tuple(argv), out, 0.0)]
    spec = load_preset(preset)
    algos = spec.get("algos", [])
    envs = spec.get("envs", []) if per_env else [None]
    share = expected_s if per_env else expected_s / max(len(algos), 1)
    runs = []
    for env in envs:
        for algo in algos:
            name = algo if env is None else f"{algo}-{env.replace('/', '-')}"
            env_args = ["--env", env] if env else []
            args = ("--algo", algo, *argv, *env_args, "--out", str(out / name))
            runs.append(
                Run("control", name, CONTROL_MODULE, CONTROL_SCRIPT, args, out / name, share)
            )
    return runs


def full_prerequisites(
    domains: list[str], args: argparse.Namespace, *, gpu: str | None
) -> list[str]:
    """Everything a --full run lacks, as sentences; empty when it can start."""
    missing = []
    if gpu is None:
        missing.append("a CUDA GPU (nvidia-smi found none); the paper recipes are GPU recipes")
    if "vision" in domains:
        if args.vision_data is None:
            missing.append("--vision-data PATH: the CIFAR-10 python folder or an ImageNet tree")
        elif not Path(args.vision_data).is_dir():
            missing.append(f"--vision-data {args.vision_data}: no such directory")
    if "llm" in domains:
        if args.llm_model is None:
            missing.append("--llm-model PATH: a local checkpoint (e.g. Qwen2.5-Math-1.5B)")
        elif not Path(args.llm_model).is_dir():
            missing.append(f"--llm-model {args.llm_model}: no such directory")
        if args.llm_data is not None and not Path(args.llm_data).exists():
            missing.append(f"--llm-data {args.llm_data}: no such file")
    for domain in domains:
        from .runner import module_available

        if not module_available(APP_MODULES[domain]):
            missing.append(f"the {domain} app ({INSTALL[domain]})")
    return missing


# ---------------------------------------------------------------------------------------------
# summaries


def summarize(domain: str, results: list[RunResult], out: Path, *, budget: str) -> Section:
    title = {"control": "Continuous control", "vision": "Image classification", "llm": "LLM RL"}
    section = Section(domain, title[domain], results)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    try:
        {"control": _control, "vision": _vision, "llm": _llm}[domain](section, out, figures, budget)
    except Exception as error:  # a broken summary must not lose the other domains
        section.error = f"{type(error).__name__}: {error}"
    return section


def _budget_line(budget: str, domain: str) -> str:
    if budget == "full":
        return "the paper-scale preset (see the commands below)."
    b = BUDGETS[budget][domain]
    return ", ".join(f"{k}={v}" for k, v in b.items() if k not in {"expected_s", "extra"})


def _control(section: Section, out: Path, figures: Path, budget: str) -> None:
    # the control app owns its summaries and figures (era_control_app.results)
    from era_control_app import results

    paper = paper_numbers()["control"]["headline"]
    section.paper = "\n".join(f"* {claim}" for claim in paper["claims"])
    runs = [
        results.load_run(r.run.out)
        for r in section.results
        if r.ok and (r.run.out / "metrics.jsonl").exists()
    ]
    if not runs:
        raise RuntimeError("no control run finished")
    section.csvs.extend(run.path / "metrics.csv" for run in runs)
    algos = list(dict.fromkeys(run.algo for run in runs))
    section.budget = (
        f"{_budget_line(budget, 'control')}; {' and '.join(a.upper() for a in algos)} share every "
        "hyper-parameter of the app's CPU preset except the entropy mechanism. The paper: 1M "
        "steps, 2x512, 10 seeds."
    )
    finals = {(run.env, run.algo): results.summarize(run)["final_eval_returns"] for run in runs}
    section.ours = markdown_table(
        ["environment", "algorithm", "seeds", "final eval return (mean ± std)"],
        [[env, algo, len(v), pm(v, 1)] for (env, algo), v in finals.items()],
    )
    envs = list(dict.fromkeys(run.env for run in runs))
    for env in envs:
        for base_algo, era_algo in results.baseline_pairs(algos):
            if (env, base_algo) in finals and (env, era_algo) in finals:
                section.verdict.append(_control_verdict(env, base_algo, era_algo, finals, budget))
    for env in envs[:8]:
        path = figures / f"control_{env.replace('/', '-')}.png"
        results.plot([run for run in runs if run.env == env], path, title=f"{env} (mean ± std)")
        section.figures.append(path)


def _control_verdict(env: str, base_algo: str, era_algo: str, finals: dict, budget: str) -> str:
    base = mean_std(finals[(env, base_algo)])[0]
    era = mean_std(finals[(env, era_algo)])[0]
    rel = (era - base) / abs(base) * 100 if base else math.nan
    word = "higher" if era > base else "lower"
    seeds = len(finals[(env, base_algo)])
    text = (
        f"{env}: {era_algo.upper()}'s final eval return is {word} than {base_algo.upper()}'s "
        f"({era:.1f} vs {base:.1f}, {rel:+.0f} %) with {seeds} seeds"
    )
    if budget != "full":
        return text + " — far too few steps and seeds to confirm or refute the paper's effect."
    return text + "."


def _vision(section: Section, out: Path, figures: Path, budget: str) -> None:
    # the vision app owns its summaries and figures: its comparison's summary.csv / .md / .json
    # (era_vision_app.compare.summarize) and the validation curves (era_vision_app.plots.plot)
    paper = paper_numbers()["vision"]["table1"]
    section.paper = (
        f"{paper['caption']}\n\n{markdown_table(paper['columns'], paper['rows'])}\n\n"
        f"{paper_numbers()['vision']['table1']['c21']}"
    )
    section.budget = (
        f"{_budget_line(budget, 'vision')}; resnet18 on scikit-learn's handwritten digits "
        "(upsampled, fixed train/test split), the app's --quick recipe. The paper: ResNet-50, "
        "200 epochs on CIFAR-10/ImageNet."
    )
    compare = out / "vision"
    _read_summary(section, compare / "summary.csv")
    summary = json.loads((compare / "summary.json").read_text())
    section.ours = _app_table((compare / "summary.md").read_text())
    by_arm = {arm["arm"]: arm for arm in summary["arms"]}
    base = next((a for n, a in by_arm.items() if n.endswith("baseline")), None)
    era = next((a for n, a in by_arm.items() if n.endswith("-era")), None)
    if base and era:
        for key, label, better in (
            ("top1", "top-1", "higher"),
            ("nll", "NLL", "lower"),
            ("ece", "ECE", "lower"),
        ):
            b, e = float(base[f"{key}_mean"]), float(era[f"{key}_mean"])
            if e == b:
                section.verdict.append(f"ERA's {label} equals the baseline's ({e:.3f}).")
                continue
            went = "higher" if e > b else "lower"
            good = "better" if went == better else "worse"
            section.verdict.append(f"ERA's {label} is {went} ({e:.3f} vs {b:.3f}): {good}.")
    from era_vision_app.plots import plot  # only reached once the vision app has run

    path = plot({run: compare / run for run in summary["runs"]}, figures / "vision_curves.png")
    section.figures.append(path)


def _app_table(markdown: str) -> str:
    """A domain app's Markdown summary as the report shows it: its table first (the block
    the report's numbers are read from), then its other text lines (captions); headings and
    the app's own image links are left out (the report links the figures itself)."""
    lines = markdown.splitlines()
    table = [line for line in lines if line.startswith("|")]
    text = [line for line in lines if line.strip() and not line.startswith(("|", "#", "!["))]
    return "\n".join(table) + ("\n\n" + "\n".join(text) if text else "")


def _llm(section: Section, out: Path, figures: Path, budget: str) -> None:
    # the llm app owns its summaries and figures: its comparison's summary.csv / .md / .json
    # (era_llm_app.compare) and the comparison figures (era_llm_app.plots.plot_comparison)
    paper = paper_numbers()["llm"]
    section.paper = (
        f"{paper['table2']['caption']}\n\n"
        f"{markdown_table(paper['table2']['columns'], paper['table2']['rows'])}\n\n"
        f"{paper['table2']['table3']} {paper['table2']['mechanism']}"
    )
    section.budget = (
        f"{_budget_line(budget, 'llm')}; a tiny causal LM built in code, a short supervised "
        "warm-up, then GRPO on multi-digit addition with exact-match rewards. The paper: "
        "Qwen2.5-Math-7B on DAPO-Math-17K."
    )
    compare = out / "llm"
    _read_summary(section, compare / "summary.csv")
    aggregate = json.loads((compare / "summary.json").read_text())["aggregate"]
    section.ours = _app_table((compare / "summary.md").read_text())
    from era_llm.era import ERAConfig  # only reached once the llm app has run

    low = ERAConfig().low  # the paper's floor, unless the ERA runs were given another
    for config in sorted((compare / "era").glob("seed*/config.json")):
        low = json.loads(config.read_text()).get("era_low", low)
        break

    def mean(method: str, key: str) -> float:
        return float(aggregate[method].get(key, [math.nan])[0])

    for method in ("grpo", "entropy-bonus"):
        if method in aggregate and "era" in aggregate:
            m, e = mean(method, "min_top_entropy_mean"), mean("era", "min_top_entropy_mean")
            section.verdict.append(
                f"lowest top-20 % response entropy: ERA {e:.3f} vs {method} {m:.3f} "
                f"(band floor {low}); ERA's lowest {'stayed above' if e >= low else 'fell below'} "
                "the floor (ERA reacts in the update after a response falls below it; it does not clip "
                "the sampled entropy)."
            )
    if "grpo" in aggregate and "era" in aggregate:
        g, e = mean("grpo", "final_eval_accuracy"), mean("era", "final_eval_accuracy")
        section.verdict.append(
            f"final accuracy: ERA {e:.3f} vs GRPO {g:.3f} ({'higher' if e > g else 'not higher'})."
        )
    for name in ("compare_entropy.png", "compare_accuracy.png", "compare_reward.png"):
        src = compare / name
        if src.exists():
            dst = figures / f"llm_{name}"
            shutil.copyfile(src, dst)
            section.figures.append(dst)


def _read_summary(section: Section, summary: Path) -> list[dict]:
    """The rows of a domain app's comparison ``summary.csv`` (linked from the report)."""
    if not summary.exists():
        raise RuntimeError(f"{summary} was not written")
    with summary.open() as handle:
        rows = list(csv.DictReader(handle))
    section.csvs.append(summary)
    return rows


def summary_table(sections: list[Section]) -> str:
    lines = [f"{'domain':<10} {'status':<8} {'wall':>8}  direction"]
    for s in sections:
        status = "ok" if s.ok else "FAILED"
        first = s.verdict[0] if s.verdict else (s.error or "")
        lines.append(f"{s.domain:<10} {status:<8} {s.wall_s / 60:>6.1f}m  {first[:100]}")
    return "\n".join(lines)
