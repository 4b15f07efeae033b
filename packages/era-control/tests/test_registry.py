"""The algorithm and head registries, the config rename, --quick as data, the import graph."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import jax.numpy as jnp
import pytest

import era_control
from era_control import heads, registry
from era_control.fast_offpolicy import FastAgent
from era_control.offpolicy import OffPolicyAgent
from era_control.ppo import PPOAgent
from era_control.registry import AlgorithmSpec, get_algorithm, list_algorithms
from era_control.tdmpc2_agent import TDMPC2
from era_control.training import TRAINERS, RunConfig, make_algo_config

SRC = Path(era_control.__file__).parent


def test_list_and_get_algorithms():
    names = era_control.list_algorithms()
    assert names == [
        "sac", "sac-era", "ppo", "ppo-era", "obac", "obac-era", "fasttd3", "fastsac", "fastsac-era",
        "tdmpc2", "tdmpc2-era",
    ]  # fmt: skip
    bases = {"off-policy": OffPolicyAgent, "on-policy": PPOAgent, "parallel off-policy": FastAgent,
             "model-based": TDMPC2}  # fmt: skip
    for name in names:
        spec = era_control.get_algorithm(name)
        assert spec.name == name and dataclasses.is_dataclass(spec.config)
        assert spec.trainer in TRAINERS and spec.description
        base = bases[spec.trainer]
        assert issubclass(spec.agent, base)
        if spec.is_era:
            assert get_algorithm(spec.baseline).trainer == spec.trainer
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]


def test_unknown_algorithm_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown algo 'dqn'; valid: sac, sac-era, ppo, ppo-era"):
        get_algorithm("dqn")
    with pytest.raises(ValueError, match="unknown algo 'dqn'"):
        RunConfig("dqn", "dmc/cartpole-swingup", 10).validate()


def test_registration_refuses_a_different_spec_under_a_taken_name():
    spec = get_algorithm("sac")
    assert registry.register_algorithm(spec) is spec  # the same spec again: a no-op
    other = dataclasses.replace(spec, description="another")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_algorithm(other)
    assert get_algorithm("sac") is spec
    with pytest.raises(ValueError, match="trainer"):
        AlgorithmSpec("x", spec.config, spec.agent, "bandit", "")


def test_a_new_algorithm_is_one_registration(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    sac = get_algorithm("sac")
    registry.register_algorithm(dataclasses.replace(sac, name="sac-copy", description="a copy"))
    assert "sac-copy" in list_algorithms()
    assert make_algo_config("sac-copy", {"hidden": [8]}).hidden == (8,)
    RunConfig("sac-copy", "dmc/cartpole-swingup", 10).validate()


def test_target_entropy_per_dim_and_its_older_override_name():
    assert (
        make_algo_config("sac-era", {"target_entropy_per_dim": -1.0}).target_entropy_per_dim == -1
    )
    assert make_algo_config("sac-era", {"entropy_per_dim": -2.0}).target_entropy_per_dim == -2
    with pytest.raises(ValueError, match="given twice"):
        make_algo_config("sac", {"entropy_per_dim": -2.0, "target_entropy_per_dim": -1.0})
    with pytest.raises(ValueError, match="unknown ppo hyper-parameter"):
        make_algo_config("ppo", {"target_entropy_per_dim": 0.0})  # plain PPO has no target


def test_quick_is_a_replace_of_the_paper_defaults():
    for name in list_algorithms():
        cls = get_algorithm(name).config
        paper = cls()
        small = paper.quick(3000)
        assert type(small) is cls and small != paper
        changed = {f.name for f in dataclasses.fields(cls)}
        changed = {k for k in changed if getattr(small, k) != getattr(paper, k)}
        assert changed <= set(cls.QUICK_FIELDS), (name, changed)
        assert cls.QUICK_STEPS >= 1000
    small = get_algorithm("sac-era").config().quick(3000)
    assert small.hidden == (256, 256) and small.updates_per_step == 1
    assert small.warmup_steps == 300


def test_make_head_builds_one_class_per_kind():
    assert set(heads.list_heads()) == {"truncated", "tanh", "sac", "gaussian", "gaussian-era"}
    assert set(heads.ERA_KINDS) == {"truncated", "tanh", "gaussian-era"}
    truncated = heads.make_head("truncated", 3, target_entropy=-1.5)
    assert isinstance(truncated, heads.TruncatedHead) and truncated.is_era
    assert heads.make_head("tanh", 3, target_entropy=-1.5, entropy_samples=8).entropy_samples == 8
    assert not heads.make_head("gaussian", 3).is_era
    with pytest.raises(ValueError, match="head kind must be one of"):
        heads.make_head("beta", 3)
    with pytest.raises(ValueError, match="infeasible"):
        heads.make_head("gaussian-era", 3, target_entropy=10.0)
    with pytest.raises(TypeError):
        heads.make_head("gaussian", 3, batch_level=True)  # not an option of that kind
    with pytest.raises(ValueError, match="log_prob is implemented for the Gaussian kinds"):
        truncated.log_prob(jnp.zeros(3), jnp.zeros(3), jnp.zeros(3))


def test_policy_head_is_the_registered_class():
    for kind in heads.list_heads():
        head = heads.PolicyHead(kind, 2, target_entropy=-1.0)
        assert type(head) is heads._HEADS[kind] and head.kind == kind
    with pytest.raises(ValueError, match="batch_level needs an ERA head"):
        heads.PolicyHead("sac", 2, batch_level=True)
    with pytest.raises(ValueError, match="head kind must be one of"):
        heads.PolicyHead("beta", 2)


def _imports(path: Path) -> set[str]:
    """Modules of era_control that ``path`` imports (anywhere in the file)."""
    module = path.stem
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("era_control."):
            out.add(node.module.split(".")[1])
    return out - {module}


def test_no_import_cycles_inside_the_package():
    graph = {p.stem: _imports(p) for p in SRC.glob("*.py") if p.stem != "__init__"}
    state: dict[str, int] = {}

    def visit(node, path):
        if state.get(node) == 1:
            pytest.fail(f"import cycle: {' -> '.join([*path, node])}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        visit(node, [])
    assert "ppo" not in graph["training"] and "training" not in graph["ppo"]


def test_algorithm_names_are_spelled_only_in_the_registrations():
    names = set(list_algorithms())
    for path in SRC.glob("*.py"):
        if path.stem == "algorithms":
            continue
        tree = ast.parse(path.read_text())
        literals = {
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names
        }
        if path.stem == "heads":
            literals -= {"sac"}  # a head kind, not the algorithm
        if path.stem == "sac":
            literals -= {"sac"}  # the head kind SAC builds
        assert not literals, (path.name, literals)
