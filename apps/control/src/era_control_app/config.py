"""From flags, preset and defaults to one run config (a :class:`era_control.training.RunConfig`
dict): the flags (:class:`RunFlags`), :func:`resolve`, ``--quick`` (:func:`quick`) and the
interval rules."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from era_control import get_algorithm, list_algorithms
from era_control.training import RunConfig, make_algo_config
from era_core.cli import check_field_types, option
from era_core.threads import CONFIG_KEY as THREADS_KEY

from .presets import load_preset, preset_agent

RUN_GROUP = "run config (saved in config.json)"
DEFAULT_STEPS = 100_000  # agent steps of a run with neither --steps nor a preset's


def _flag(help: str, **kwargs: Any) -> Any:
    """A :class:`RunFlags` field: ``None`` (not given) by default, listed in :data:`RUN_GROUP`."""
    return field(default=None, metadata=option(help, group=RUN_GROUP, **kwargs))


@dataclass
class RunFlags:
    """The flags that set a run config: the :class:`~era_control.training.RunConfig` fields a
    user gives (``None``: not given, the preset's or the default value holds) and the per-
    dimension target entropy, which goes into the agent's overrides. ``--help`` of ``--algo``
    and ``--config`` is filled in from the registry and the presets when the parser is built."""

    algo: str | None = _flag("the algorithm", default_text="required unless --resume")
    env: str | None = _flag(
        "dmc/<domain>-<task>, gym/<Id> or hb/<task>",
        default_text="the preset's first env",
        metavar="ID",
    )
    steps: int | None = _flag(
        "agent steps per seed (after action repeat)",
        default_text=f"the preset's, else {DEFAULT_STEPS}",
        metavar="N",
    )
    seeds: int | None = _flag(
        "number of seeds trained at once (vmapped)",
        default_text="the preset's, else 1",
        metavar="S",
    )
    seed: int | None = _flag("first seed", default_text="0", metavar="K")
    action_repeat: int | None = _flag(
        "environment steps per agent step",
        default_text="1 for dmc/ and gym/, 2 for hb/",
        metavar="N",
    )
    num_envs: int | None = _flag(
        "parallel environments per seed, in worker processes (the parallel algorithms: N >= 2, "
        "--steps then counts transitions; the other algorithms: 1)",
        default_text="1",
        metavar="N",
    )
    target_entropy_per_dim: float | None = _flag(
        "target entropy PER action dimension (H0 = D*H); --target-entropy is an alias",
        aliases=("--target-entropy",),
        metavar="H",
        default_text="the algorithm's",
    )
    log_interval: int | None = _flag(
        "steps between metric rows", default_text="steps / 30", metavar="N"
    )
    eval_interval: int | None = _flag(
        "steps between evaluations (a multiple of the log interval)",
        default_text="steps / 10",
        metavar="N",
    )
    eval_episodes: int | None = _flag("episodes per evaluation", default_text="1", metavar="N")
    checkpoint_interval: int | None = _flag(
        "steps between checkpoints (a multiple of the log interval)",
        default_text="the eval interval",
        metavar="N",
    )


# flag dest -> RunConfig field (every RunFlags field but the agent's target entropy)
RUN_FLAGS = {
    f.name: f.name for f in dataclasses.fields(RunFlags) if f.name != "target_entropy_per_dim"
}
RUN_INTERVALS = ("eval_interval", "checkpoint_interval")


def default_intervals(steps: int) -> dict[str, int]:
    log = max(steps // 30, 1)
    evals = max(steps // 10 // log, 1) * log
    return {"log_interval": log, "eval_interval": evals, "checkpoint_interval": evals}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def quick(run: dict[str, Any]) -> dict[str, Any]:
    """Shrink a run to a few minutes on CPU: at most the algorithm's ``QUICK_STEPS`` and two
    seeds, one evaluation episode, the config's own ``quick()`` (e.g. 2x256 at most, one update
    per step), intervals scaled down."""
    run = copy.deepcopy(run)
    config_class = get_algorithm(run["algo"]).config
    run["steps"] = min(run["steps"], config_class.QUICK_STEPS)
    run["seeds"] = min(run["seeds"], 2)
    run["eval_episodes"] = 1
    run["agent"].update(_quick_agent(run))
    for key in ("log_interval", "eval_interval", "checkpoint_interval"):
        run[key] = min(run[key], default_intervals(run["steps"])[key])
    return align_intervals(run)


# trainer kind -> the env-id prefix of the runs that take CPU sizes on a CPU backend ("": every
# env): the parallel Fast* algorithms on the on-device mjx/ envs (their defaults: a 32768-
# transition batch through 1024-wide critics) and TD-MPC2 (its official 5M-parameter model and
# MPPI of 6 iterations x 512 samples at every env step)
CPU_SIZED = {"parallel off-policy": "mjx/", "model-based": ""}
# trainer kind -> evaluations per run that a CPU-sized run with the default eval interval gets
# instead of the default's ten: TD-MPC2 plans each evaluation step with MPPI, so on CPU one
# evaluation episode costs what about 250 updates do
CPU_EVALUATIONS = {"model-based": 5}


def cpu_sized(run: dict[str, Any], *, eval_interval_given: bool = False) -> list[str]:
    """For a run that :data:`CPU_SIZED` names (an ``mjx/`` run of FastTD3, FastSAC or
    FastSAC-ERA; any TD-MPC2 or TD-MPC2-ERA run) on a CPU backend: the config's ``quick()``
    sizes (networks, batch; TD-MPC2's MPPI samples and iterations, warm-up) for each of its
    ``QUICK_FIELDS`` that the preset and ``--set`` left unset, written into ``run["agent"]``
    (so ``config.json`` and ``--resume`` keep them); and, for a trainer kind in
    :data:`CPU_EVALUATIONS` whose eval interval neither ``--eval-interval`` gave
    (``eval_interval_given``) nor differs from the default's, fewer evaluations. The published
    defaults are sized for a GPU. Returns ``key=value`` of each field set, empty when none."""
    kind = get_algorithm(run["algo"]).trainer
    prefix = CPU_SIZED.get(kind)
    if prefix is None or not str(run["env"]).startswith(prefix):
        return []
    unset = {k: v for k, v in _quick_agent(run).items() if k not in run["agent"]}
    run["agent"].update(unset)
    changed = [f"{key}={value}" for key, value in unset.items()]
    evaluations = CPU_EVALUATIONS.get(kind)
    default = default_intervals(max(int(run["steps"]), 1))["eval_interval"]
    if evaluations and not eval_interval_given and run.get("eval_interval") == default:
        log = run["log_interval"]
        interval = max(run["steps"] // evaluations // log, 1) * log
        if interval > default:
            run["eval_interval"] = interval
            changed.append(f"eval_interval={interval}")
    return changed


def _quick_agent(run: dict[str, Any]) -> dict[str, Any]:
    """The config's ``quick()`` values of its ``QUICK_FIELDS`` for ``run``, as config.json holds them."""
    small = make_algo_config(run["algo"], run["agent"]).quick(run["steps"])
    fields = get_algorithm(run["algo"]).config.QUICK_FIELDS
    return {key: _jsonable(getattr(small, key)) for key in fields}


def align_intervals(run: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Round the eval and checkpoint intervals (those not in ``keep``, i.e. not given as flags)
    down to multiples of the log interval: both happen only on logging steps."""
    log = run["log_interval"]
    for key in RUN_INTERVALS:
        if key not in keep and run[key] % log:
            run[key] = max(run[key] // log, 1) * log
    return run


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as ``{key: value}``: the value read as TOML (``8``, ``1e-3``,
    ``[256, 256]``, ``true``), else kept as the string given."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


# flags that hold a count: (flag dest, smallest valid value)
_AT_LEAST = {
    "steps": 1,
    "seeds": 1,
    "seed": 0,
    "action_repeat": 1,
    "num_envs": 1,
    "log_interval": 1,
    "eval_interval": 1,
    "eval_episodes": 1,
    "checkpoint_interval": 1,
}


def check_flags(args: argparse.Namespace) -> None:
    """``ValueError`` naming the flag for a count given out of range (before any arithmetic
    on it: a log interval of 0 would divide by zero)."""
    for dest, low in _AT_LEAST.items():
        value = getattr(args, dest, None)
        if value is not None and value < low:
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} {value} is out of range: it must be an integer >= {low}")


def check_agent(algo: str, agent: dict[str, Any], given: Collection[str]) -> None:
    """The types of the hyper-parameter overrides of ``algo``; the keys in ``given`` came from
    ``--set``, the others from the preset or a stored ``config.json``."""
    cls = get_algorithm(algo).config

    def where(key: str) -> str:
        return f"--set {key}" if key in given else f"hyper-parameter {key}"

    check_field_types(agent, cls, where)


def _from_preset(args: argparse.Namespace) -> dict[str, Any]:
    """A fresh run config from the defaults and the preset (before any flag)."""
    preset = load_preset(args.config) if args.config else {}
    if args.algo is None:
        raise ValueError(f"--algo is required ({', '.join(list_algorithms())})")
    if preset and args.algo not in preset.get("algos", [args.algo]):
        raise ValueError(
            f"--algo {args.algo} is not part of --config {args.config} "
            f"(its algos: {', '.join(preset['algos'])})"
        )
    env = args.env or (preset.get("envs") or [None])[0]
    if env is None:
        raise ValueError("--env is required, e.g. --env dmc/cartpole-swingup")
    steps = args.steps
    if steps is None:
        steps = preset.get("run", {}).get("steps", DEFAULT_STEPS)
    run = {"algo": args.algo, "env": env, "steps": steps, "seeds": 1, "seed": 0}
    run["action_repeat"] = None
    run.update(default_intervals(max(int(steps), 1)))
    run["eval_episodes"] = 1
    settings = preset.get("run", {})
    check_field_types(settings, RunConfig, lambda key: f"--config {args.config} [run] {key}")
    run.update(settings)
    run["agent"] = preset_agent(preset, args.algo)
    return run


def resolve(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run config (a RunConfig dict) from ``base`` (a stored run, for --resume) or from
    the defaults and preset, then the flags given, then ``--quick``."""
    check_flags(args)
    run = copy.deepcopy(base) if base is not None else _from_preset(args)
    if base is not None:  # a stored config.json, maybe edited by hand
        fields = {k: v for k, v in run.items() if k not in ("agent", THREADS_KEY)}
        check_field_types(fields, RunConfig, lambda key: f"config.json {key}")
        if not isinstance(run.get("agent", {}), dict):
            raise ValueError(f"config.json agent={run['agent']!r} is not valid: it must be a table")
    for dest, name in RUN_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            run[name] = value
    if args.steps is not None and base is None:
        for key, value in default_intervals(max(args.steps, 1)).items():
            if getattr(args, key) is None and run[key] > args.steps:
                run[key] = value
        align_intervals(run, keep=tuple(k for k in RUN_INTERVALS if getattr(args, k) is not None))
    agent = dict(run["agent"])
    overrides = parse_set(args.set)
    agent.update(overrides)
    if args.target_entropy_per_dim is not None:
        agent.pop("entropy_per_dim", None)  # the field's older name, as --set may give it
        agent["target_entropy_per_dim"] = args.target_entropy_per_dim
    run["agent"] = agent
    check_agent(run["algo"], agent, overrides)
    if args.quick:
        run = quick(run)
    if run["steps"] < 1:
        raise ValueError(f"--steps must be a positive integer, got {run['steps']}")
    return run
