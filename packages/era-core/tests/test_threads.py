"""era_core.threads: the order in which a thread count is chosen, the record, the pools."""

from __future__ import annotations

import subprocess
import sys

import pytest

from era_core import threads


def test_the_flag_then_the_record_then_the_default_capped_at_the_usable_cores():
    cores = threads.usable_cores()
    assert cores >= 1
    assert threads.choose_threads(3, default=1, stored={"threads": 2}).threads == 3
    resumed = threads.choose_threads(0, default=1, stored={"threads": 2, "interop": 1})
    assert (resumed.threads, resumed.rule) == (2, "the resumed run's count")
    for broken in (None, {}, {"threads": 0}, {"threads": "2"}, {"threads": True}, [2]):
        plan = threads.choose_threads(None, default=10_000, reason="why", stored=broken)
        assert plan.threads == cores and plan.rule.endswith("(why)")
        assert plan.rule.startswith(f"default: min(10000, {cores} usable cores)")


@pytest.mark.parametrize("requested", [-1, 1.5, "2", True])
def test_a_bad_count_names_the_flag(requested):
    with pytest.raises(ValueError, match=r"--workers-threads .* must be an integer >= 0"):
        threads.choose_threads(requested, default=1, flag="--workers-threads")
    with pytest.raises(ValueError, match="default must be an integer >= 1"):
        threads.choose_threads(0, default=0)


def test_the_record_reads_back():
    plan = threads.choose_threads(2, default=1)
    assert threads.ThreadPlan.from_dict(plan.to_dict()) == plan
    assert threads.ThreadPlan.from_dict({**plan.to_dict(), "xla_flags": "x"}) == plan


def test_blas_variables_of_the_user_win():
    env = {"OMP_NUM_THREADS": "4"}
    threads.apply_blas(threads.ThreadPlan(2, 1, 2, "test"), environ=env)
    assert env == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}


def test_xla_flags_of_the_user_win():
    one = threads.ThreadPlan(1, 1, 2, "test")
    env: dict[str, str] = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert threads.apply_xla(one, environ=env) == (
        "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false"
    )
    mine = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
    assert threads.apply_xla(one, environ=mine) == "--xla_cpu_multi_thread_eigen=true"
    assert threads.apply_xla(threads.ThreadPlan(2, 1, 2, "t"), environ={}) == (
        "--xla_cpu_multi_thread_eigen=true"
    )


def test_importing_it_imports_no_framework():
    code = "import sys, era_core.threads; print(sorted({'torch', 'jax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_pools_follow_the_plan():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        applied = threads.apply_torch(threads.ThreadPlan(1, 1, 2, "test"))
        assert applied.threads == torch.get_num_threads() == 1
        assert applied.interop == torch.get_num_interop_threads()
    finally:
        torch.set_num_threads(before)
