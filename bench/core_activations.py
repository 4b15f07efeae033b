"""Benchmark: what the era_core activations cost next to the plain layers they replace.

What it measures
----------------
1. Micro (forward + backward of one head, loss included):

   * Gaussian head, batch 256 x 38 actions. Plain: a typical SAC log-std head, either
     ``clip(pre_std, -8, 0)`` or the tanh rescaling ``-8 + 0.5 * 8 * (tanh(pre_std) + 1)``.
     ERA: ``era_core.gaussian_log_std(pre_std, target_entropy=-38, log_std_min=-8, log_std_max=0)``.
     Loss in every arm: ``sum(exp(log_std))``.
   * Softmax head, batch 256 x 1000 classes. Plain: cross-entropy from the logits
     (log_softmax + NLL). ERA: the same cross-entropy on ``era_core.softmax_era(logits,
     min_entropy=1.2, mode=...)`` for mode "paper" and "exact".

2. Training step of a 2 x 512 MLP (ReLU) at batch 256, forward + backward + Adam update, once
   with the plain head and once with the ERA head (the issue's goal: ERA adds <= 10 %):

   * control: 64 observations -> 512 -> 512 -> 2 * 38 (mean, pre_std); loss is the Gaussian
     negative log-likelihood of fixed target actions under (mean, exp(log_std)).
   * vision: 512 features -> 512 -> 512 -> 1000 logits; cross-entropy with random labels.

   Torch uses ``torch.optim.Adam``; JAX uses a small hand-written Adam (optax is not a
   dependency). Both arms of a comparison use the same optimizer, data and initial weights.

Backends: torch eager (CPU), JAX ``jax.jit`` (CPU), and with ``--torch-compile`` also
``torch.compile`` (the loss function is compiled; the optimizer step stays eager).

How it measures
---------------
Every variant is warmed up (and compiled) first. One *sample* runs a variant ``n`` times in a
row (``n`` chosen so that a sample of the slowest variant lasts about ``--sample-ms``) and is
timed with ``time.perf_counter``; JAX results are waited for with ``block_until_ready`` after
every call. The variants of a case are then interleaved (ABAB..., the order rotating each
round) until the case's time budget is spent, with the garbage collector off. The table shows
the median time per call of each variant and the median of the per-round ratios ERA / plain
(with its interquartile range), so slow drifts of a shared, noisy machine hit both arms alike.

Run ``python bench/core_activations.py`` (about 2-3 minutes) or ``--quick`` (about 30 s);
``--write-docs docs/benchmarks.md`` also puts the table into that file between the
``<!-- bench:core:start -->`` and ``<!-- bench:core:end -->`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from docs_section import markers, write_section

os.environ.setdefault("JAX_PLATFORMS", "cpu")

BATCH = 256
ACTION_DIM = 38
NUM_CLASSES = 1000
HIDDEN = 512
CONTROL_OBS_DIM = 64
VISION_FEATURE_DIM = 512
LOG_STD_MIN, LOG_STD_MAX = -8.0, 0.0
TARGET_ENTROPY = -1.0 * ACTION_DIM  # -1 nat per action dimension
MIN_ENTROPY = 1.2
SOFTMAX_MODES = ("paper", "exact")
LEARNING_RATE = 3e-4
GOAL_OVERHEAD = 0.10  # the goal: the ERA head adds at most 10 % to a training step
NOISY = 1.5  # a case whose median sample is this much slower than its fastest one ran contended

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Cases and timing
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One benchmark case: variants timed side by side, and the rows reported from them."""

    backend: str
    kind: str  # "micro" or "train step"
    name: str
    shape: str
    variants: dict[str, Callable[[], object]]  # name -> one call (forward+backward[+update])
    comparisons: list[tuple[str, str]]  # (plain variant, ERA variant)
    samples: dict[str, list[float]] = field(default_factory=dict)  # seconds per call, per round


@dataclass
class Row:
    backend: str
    kind: str
    case: str
    shape: str
    plain_us: float
    era_us: float
    ratio: float  # median of the per-round ratios ERA / plain
    ratio_q1: float
    ratio_q3: float
    noise: float  # median / fastest sample, the worse of the two arms

    @property
    def noisy(self) -> bool:
        return self.noise >= NOISY

    @property
    def verdict(self) -> str:
        if self.kind != "train step":
            return "n/a (micro)"
        limit = 1.0 + GOAL_OVERHEAD
        if self.ratio <= limit and self.ratio_q3 <= limit:
            verdict = "met"
        elif self.ratio > limit and self.ratio_q1 > limit:
            verdict = "not met"
        else:
            verdict = "borderline"
        return f"{verdict} (noisy)" if self.noisy else verdict


def _time_calls(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def measure(case: Case, budget_s: float, sample_s: float, warmup_s: float) -> None:
    """Warm up every variant, then time them interleaved until ``budget_s`` is spent."""
    names = list(case.variants)
    for name in names:  # warm-up (and compilation)
        fn = case.variants[name]
        start = time.perf_counter()
        calls = 0
        while calls < 3 or time.perf_counter() - start < warmup_s:
            fn()
            calls += 1
    slowest = max(_time_calls(case.variants[name], 3) for name in names)
    n = max(1, round(sample_s / slowest))

    case.samples = {name: [] for name in names}
    gc.collect()
    gc.disable()
    try:
        deadline = time.perf_counter() + budget_s
        round_index = 0
        while round_index < 5 or time.perf_counter() < deadline:
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                case.samples[name].append(_time_calls(case.variants[name], n))
            round_index += 1
    finally:
        gc.enable()


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def rows_of(case: Case) -> list[Row]:
    rows = []
    for plain, era in case.comparisons:
        ratios = [e / p for e, p in zip(case.samples[era], case.samples[plain], strict=True)]
        q1, median, q3 = _quartiles(ratios)
        noise = max(statistics.median(case.samples[v]) / min(case.samples[v]) for v in (plain, era))
        rows.append(
            Row(
                backend=case.backend,
                kind=case.kind,
                case=f"{case.name}: {era} vs {plain}",
                shape=case.shape,
                plain_us=statistics.median(case.samples[plain]) * 1e6,
                era_us=statistics.median(case.samples[era]) * 1e6,
                ratio=median,
                ratio_q1=q1,
                ratio_q3=q3,
                noise=noise,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


# ERA heads are the same code on every backend (era_core is array-API); only the plain heads
# differ per framework.
def log_std_era(pre_std):
    import era_core

    return era_core.gaussian_log_std(
        pre_std, TARGET_ENTROPY, log_std_min=LOG_STD_MIN, log_std_max=LOG_STD_MAX
    )


def softmax_head_table(array_api_path: bool = False):
    """Plain cross-entropy head (identity on the logits) and one ERA head per softmax mode.

    With ``array_api_path`` (torch), also the array-API path that torch tensors ran before the
    fused ``torch.autograd.Function`` (``ERA <mode> array-API``), timed in the same run.
    """
    import era_core

    def era_softmax(mode):
        return lambda logits: era_core.softmax_era(logits, MIN_ENTROPY, mode=mode)

    table = {"CE": lambda logits: logits} | {f"ERA {m}": era_softmax(m) for m in SOFTMAX_MODES}
    if array_api_path:
        table |= {f"ERA {m} array-API": softmax_era_array_api(m) for m in SOFTMAX_MODES}
    return table


def softmax_era_array_api(mode: str):
    """``softmax_era`` through era_core's array-API path (the fused path's reference)."""
    import math

    import array_api_compat

    from era_core import _softmax_era as impl

    def head(logits):
        xp = array_api_compat.array_namespace(logits)
        c = logits.shape[-1]
        if mode == "exact":
            h_tau = impl._calibrated_h_tau(c, MIN_ENTROPY, 4.0, impl._dtype_name(xp, logits.dtype))
        else:
            h_tau = math.exp(MIN_ENTROPY - 1.0)
        slope, offset = impl._affine(c, h_tau, 4.0)
        dtype = impl.compute_dtype(xp, logits, "logits")
        steps = impl._NEWTON_STEPS["float64" if dtype == xp.float64 else "float32"]
        return impl._softmax_era_array(
            xp, logits, dtype, slope, offset, tau=4.0, mode=mode, steps=steps
        )

    return head


def standard_cases(
    backend: str,
    gaussian_heads: dict,
    *,
    micro_gaussian,
    micro_softmax,
    train_control,
    train_vision,
    array_api_path: bool = False,
):
    """The four cases of one backend; each keyword maps a head to one timed call."""
    softmax_heads = softmax_head_table(array_api_path)
    gaussian_pairs = [("clip", "ERA"), ("tanh", "ERA")]
    softmax_pairs = [("CE", name) for name in softmax_heads if name != "CE"]
    specs = [
        (
            "micro",
            "gaussian_log_std",
            f"{BATCH}×{ACTION_DIM}",
            micro_gaussian,
            gaussian_heads,
            gaussian_pairs,
        ),
        (
            "micro",
            "softmax_era + CE",
            f"{BATCH}×{NUM_CLASSES}",
            micro_softmax,
            softmax_heads,
            softmax_pairs,
        ),
        (
            "train step",
            "control MLP",
            f"{BATCH}×{CONTROL_OBS_DIM} → 2×{HIDDEN} → 2×{ACTION_DIM}",
            train_control,
            gaussian_heads,
            gaussian_pairs,
        ),
        (
            "train step",
            "vision MLP",
            f"{BATCH}×{VISION_FEATURE_DIM} → 2×{HIDDEN} → {NUM_CLASSES}",
            train_vision,
            softmax_heads,
            softmax_pairs,
        ),
    ]
    return [
        Case(backend, kind, label, shape, {name: call(head) for name, head in heads.items()}, pairs)
        for kind, label, shape, call, heads, pairs in specs
    ]


def torch_cases(compiled: bool) -> list[Case]:
    import torch
    import torch.nn.functional as F

    backend = "torch.compile" if compiled else "torch eager"
    # array_api_compat's array_namespace uses functools.lru_cache; Dynamo traces through it and
    # warns once per helper. Harmless here (the namespace of a tensor never changes).
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
    maybe_compile = (lambda fn: torch.compile(fn, dynamic=False)) if compiled else (lambda fn: fn)
    gen = torch.Generator().manual_seed(0)

    def log_std_clip(pre_std):
        return torch.clamp(pre_std, LOG_STD_MIN, LOG_STD_MAX)

    def log_std_tanh(pre_std):
        return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(pre_std) + 1.0)

    gaussian_heads = {"clip": log_std_clip, "tanh": log_std_tanh, "ERA": log_std_era}

    def fwd_bwd(loss_fn, *inputs):
        leaf = inputs[0]

        def call():
            leaf.grad = None
            loss_fn(*inputs).backward()

        return call

    # Micro: Gaussian log-std head.
    pre_std = torch.randn(BATCH, ACTION_DIM, generator=gen).requires_grad_()

    def gaussian_loss(head):
        return maybe_compile(lambda x: torch.exp(head(x)).sum())

    # Micro: softmax head with cross-entropy.
    logits = (2.0 * torch.randn(BATCH, NUM_CLASSES, generator=gen)).requires_grad_()
    labels = torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen)

    def ce_loss(head):
        return maybe_compile(lambda z, y: F.cross_entropy(head(z), y))

    # Training steps of a 2 x 512 MLP with Adam.
    def mlp(in_dim, out_dim):
        torch.manual_seed(0)  # identical initial weights in every arm
        return torch.nn.Sequential(
            torch.nn.Linear(in_dim, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, HIDDEN),
            torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN, out_dim),
        )

    def train_step(model, loss_fn, *batch):
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loss_fn = maybe_compile(loss_fn)

        def call():
            optimizer.zero_grad(set_to_none=True)
            loss_fn(*batch).backward()
            optimizer.step()

        return call

    obs = torch.randn(BATCH, CONTROL_OBS_DIM, generator=gen)
    actions = torch.rand(BATCH, ACTION_DIM, generator=gen) * 2.0 - 1.0

    def control_step(head):
        model = mlp(CONTROL_OBS_DIM, 2 * ACTION_DIM)

        def loss_fn(o, a):
            mean, pre = model(o).split(ACTION_DIM, dim=-1)
            log_std = head(pre)
            nll = 0.5 * ((a - mean) * torch.exp(-log_std)) ** 2 + log_std
            return nll.sum(-1).mean()

        return train_step(model, loss_fn, obs, actions)

    features = torch.randn(BATCH, VISION_FEATURE_DIM, generator=gen)

    def vision_step(head):
        model = mlp(VISION_FEATURE_DIM, NUM_CLASSES)
        return train_step(model, lambda x, y: F.cross_entropy(head(model(x)), y), features, labels)

    return standard_cases(
        backend,
        gaussian_heads,
        micro_gaussian=lambda head: fwd_bwd(gaussian_loss(head), pre_std),
        micro_softmax=lambda head: fwd_bwd(ce_loss(head), logits, labels),
        train_control=control_step,
        train_vision=vision_step,
        array_api_path=True,
    )


# --------------------------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------------------------


def jax_cases() -> list[Case]:
    import jax
    import jax.numpy as jnp

    backend = "JAX jit"
    keys = iter(jax.random.split(jax.random.key(0), 16))

    def log_std_clip(pre_std):
        return jnp.clip(pre_std, LOG_STD_MIN, LOG_STD_MAX)

    def log_std_tanh(pre_std):
        return LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(pre_std) + 1.0)

    gaussian_heads = {"clip": log_std_clip, "tanh": log_std_tanh, "ERA": log_std_era}

    def cross_entropy(logits, labels):
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))

    def fwd_bwd(loss_fn, *inputs):
        grad_fn = jax.jit(jax.grad(loss_fn))
        return lambda: grad_fn(*inputs).block_until_ready()

    # Micro cases.
    pre_std = jax.random.normal(next(keys), (BATCH, ACTION_DIM))

    def gaussian_loss(head):
        return lambda x: jnp.sum(jnp.exp(head(x)))

    logits = 2.0 * jax.random.normal(next(keys), (BATCH, NUM_CLASSES))
    labels = jax.random.randint(next(keys), (BATCH,), 0, NUM_CLASSES)

    def ce_loss(head):
        return lambda z, y: cross_entropy(head(z), y)

    # Training steps: 2 x 512 MLP, hand-written Adam, whole step under jax.jit.
    def init_mlp(in_dim, out_dim):
        dims = [in_dim, HIDDEN, HIDDEN, out_dim]
        layer_keys = jax.random.split(jax.random.key(1), len(dims) - 1)
        params = []
        for key, fan_in, fan_out in zip(layer_keys, dims[:-1], dims[1:], strict=True):
            bound = 1.0 / fan_in**0.5  # the torch.nn.Linear default range
            w_key, b_key = jax.random.split(key)
            params.append(
                {
                    "w": jax.random.uniform(w_key, (fan_in, fan_out), minval=-bound, maxval=bound),
                    "b": jax.random.uniform(b_key, (fan_out,), minval=-bound, maxval=bound),
                }
            )
        return params

    def mlp(params, x):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        return x @ params[-1]["w"] + params[-1]["b"]

    def adam_init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return jnp.zeros((), jnp.int32), zeros, zeros

    def adam_update(params, grads, state, b1=0.9, b2=0.999, eps=1e-8):
        count, mu, nu = state
        count = count + 1
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, mu, grads)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grads)
        mu_scale = 1.0 / (1.0 - b1**count)
        nu_scale = 1.0 / (1.0 - b2**count)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - LEARNING_RATE * m * mu_scale / (jnp.sqrt(v * nu_scale) + eps),
            params,
            mu,
            nu,
        )
        return params, (count, mu, nu)

    def train_step(params, loss_fn, *batch):
        @jax.jit
        def step(params, opt_state, *batch):
            loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
            params, opt_state = adam_update(params, grads, opt_state)
            return params, opt_state, loss

        state = [params, adam_init(params)]

        def call():
            params, opt_state, loss = step(*state, *batch)
            state[:] = [params, opt_state]
            loss.block_until_ready()

        return call

    obs = jax.random.normal(next(keys), (BATCH, CONTROL_OBS_DIM))
    actions = jax.random.uniform(next(keys), (BATCH, ACTION_DIM), minval=-1.0, maxval=1.0)

    def control_step(head):
        def loss_fn(params, o, a):
            out = mlp(params, o)
            mean, pre = out[:, :ACTION_DIM], out[:, ACTION_DIM:]
            log_std = head(pre)
            nll = 0.5 * ((a - mean) * jnp.exp(-log_std)) ** 2 + log_std
            return jnp.mean(jnp.sum(nll, axis=-1))

        return train_step(init_mlp(CONTROL_OBS_DIM, 2 * ACTION_DIM), loss_fn, obs, actions)

    features = jax.random.normal(next(keys), (BATCH, VISION_FEATURE_DIM))

    def vision_step(head):
        def loss_fn(params, x, y):
            return cross_entropy(head(mlp(params, x)), y)

        return train_step(init_mlp(VISION_FEATURE_DIM, NUM_CLASSES), loss_fn, features, labels)

    return standard_cases(
        backend,
        gaussian_heads,
        micro_gaussian=lambda head: fwd_bwd(gaussian_loss(head), pre_std),
        micro_softmax=lambda head: fwd_bwd(ce_loss(head), logits, labels),
        train_control=control_step,
        train_vision=vision_step,
    )


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_line(threads: int, backends: list[str]) -> str:
    import era_core

    parts = [f"CPU: {cpu_model()}, {threads} cores used"]
    if any(b.startswith("torch") for b in backends):
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    if "jax" in backends:
        import jax

        parts.append(f"jax {jax.__version__} ({jax.default_backend()})")
    import numpy

    parts.append(f"numpy {numpy.__version__}")
    parts.append(f"era_core {getattr(era_core, '__version__', 'dev')}")
    parts.append(f"Python {platform.python_version()}")
    parts.append(datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return ", ".join(parts)


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| backend | kind | case | shape | plain µs | ERA µs | ratio ERA/plain (IQR) | overhead"
        " | ≤ 10 % goal | noise |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.kind} | {r.case} | {r.shape} | {r.plain_us:,.0f} | {r.era_us:,.0f}"
            f" | {r.ratio:.2f} ({r.ratio_q1:.2f}–{r.ratio_q3:.2f}) | {100 * (r.ratio - 1):+.0f} %"
            f" | {r.verdict} | {r.noise:.2f} |"
        )
    return "\n".join(lines)


def goal_summary(rows: list[Row]) -> str:
    """One line per verdict listing the training-step comparisons that got it."""
    by_verdict: dict[str, list[str]] = {}
    for r in rows:
        if r.kind == "train step":
            label = f"{r.backend} {r.case} ({100 * (r.ratio - 1):+.0f} %)"
            by_verdict.setdefault(r.verdict, []).append(label)
    if not by_verdict:
        return "No training-step rows in this run, so the ≤ 10 % goal was not checked."
    lines = ["Goal: the ERA head adds ≤ 10 % to a training step of the 2×512 MLP."]
    order = ("met", "borderline", "not met")
    for verdict in sorted(by_verdict, key=lambda v: (order.index(v.removesuffix(" (noisy)")), v)):
        lines.append(f"* {verdict}: " + "; ".join(by_verdict[verdict]))
    if any(r.noisy for r in rows):
        lines.append(
            f"\nSome cases ran under heavy contention (noise ≥ {NOISY}): their numbers are not"
            " trustworthy; rerun when the machine is quiet."
        )
    return "\n".join(lines)


NOTES = f"""\
Notes:

* plain µs / ERA µs: median time of one call (forward + backward; for a train step also the
  optimizer update). ratio: median over the interleaved rounds of ERA time / plain time,
  measured side by side in one run; IQR: interquartile range of those per-round ratios.
* Gaussian plain heads: clip = `clip(pre_std, {LOG_STD_MIN:g}, {LOG_STD_MAX:g})`;
  tanh = `{LOG_STD_MIN:g} + 0.5 * {LOG_STD_MAX - LOG_STD_MIN:g} * (tanh(pre_std) + 1)`.
  ERA = `gaussian_log_std(pre_std, {TARGET_ENTROPY:g}, log_std_min={LOG_STD_MIN:g}, log_std_max={LOG_STD_MAX:g})`
  (target entropy −1 nat per action dimension). Micro loss: `sum(exp(log_std))`.
* Softmax: plain = cross-entropy on the logits; ERA = the same cross-entropy on
  `softmax_era(logits, min_entropy={MIN_ENTROPY:g}, mode=...)`. For torch that is the fused
  `torch.autograd.Function`; "ERA <mode> array-API" is era_core's array-API path on the same
  tensors (autograd's own backward), timed side by side in the same run.
* Train step: 2×{HIDDEN} ReLU MLP, batch {BATCH}, Adam with lr {LEARNING_RATE:g}
  (`torch.optim.Adam` for torch; a hand-written Adam for JAX, whole step under `jax.jit`). Both
  arms use the same optimizer, data and initial weights. Control loss: Gaussian NLL of fixed
  target actions; vision loss: cross-entropy with random labels.
* Goal verdict: "met" = median and upper quartile of the ratio ≤ 1.10; "not met" = median and
  lower quartile > 1.10; otherwise "borderline".
* noise: median sample / fastest sample, the worse of the two arms; near 1 on a quiet machine,
  ≥ {NOISY} marks a case that ran contended (its verdict then says "noisy")."""


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO_ROOT))
    except ValueError:
        script_text = sys.argv[0]
    return shlex.join(["python", script_text, *sys.argv[1:]])


def write_docs(path: Path, section: str) -> None:
    write_section(path, "core", section)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the era_core activations against the plain layers they replace.",
    )
    parser.add_argument("--quick", action="store_true", help="short run (about 30 s)")
    parser.add_argument(
        "--backends",
        default="torch,jax",
        help="comma-separated subset of: torch, jax (default: %(default)s)",
    )
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="also time torch.compile'd variants (adds compilation time)",
    )
    parser.add_argument(
        "--suites",
        default="micro,train",
        help="comma-separated subset of: micro, train (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds-per-case",
        type=float,
        default=None,
        help="interleaved timing budget per case (default: 13, or 2 with --quick)",
    )
    parser.add_argument(
        "--sample-ms",
        type=float,
        default=None,
        help="length of one timed sample of the slowest variant (default: 10, or 5 with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=usable_cores(),
        help="torch intra-op threads (default: the number of usable cores, %(default)s)",
    )
    parser.add_argument(
        "--write-docs",
        type=Path,
        metavar="PATH",
        help="replace the section between {} and {} in this Markdown file".format(*markers("core")),
    )
    args = parser.parse_args(argv)
    if args.seconds_per_case is None:
        args.seconds_per_case = 2.0 if args.quick else 13.0
    if args.sample_ms is None:
        args.sample_ms = 5.0 if args.quick else 10.0
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    for b in args.backends:
        if b not in ("torch", "jax"):
            parser.error(f"unknown backend {b!r}; choose from torch, jax")
    for s in args.suites:
        if s not in ("micro", "train"):
            parser.error(f"unknown suite {s!r}; choose from micro, train")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = list(args.backends)
    cases: list[Case] = []
    if "torch" in backends:
        import torch

        torch.set_num_threads(args.threads)
        cases += torch_cases(compiled=False)
        if args.torch_compile:
            cases += torch_cases(compiled=True)
            backends.append("torch.compile")
    if "jax" in backends:
        cases += jax_cases()
    suite_of = {"micro": "micro", "train step": "train"}
    cases = [c for c in cases if suite_of[c.kind] in args.suites]

    warmup_s = 0.1 if args.quick else 0.5
    rows: list[Row] = []
    started = time.perf_counter()
    for case in cases:
        print(
            f"[{time.perf_counter() - started:6.1f} s] {case.backend}: {case.name}", file=sys.stderr
        )
        measure(case, args.seconds_per_case, args.sample_ms / 1e3, warmup_s)
        rows += rows_of(case)

    env = environment_line(args.threads, backends)
    table = markdown_table(rows)
    print()
    print(table)
    print()
    print(goal_summary(rows))
    print()
    print(f"Environment: {env}")
    print(f"Total time: {time.perf_counter() - started:.0f} s")

    if args.write_docs is not None:
        section = "\n\n".join(
            [
                f"Command: `{command_line()}`",
                f"Environment: {env}",
                table,
                goal_summary(rows),
                NOTES,
            ]
        )
        write_docs(args.write_docs, section)
        print(f"Wrote the table to {args.write_docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
