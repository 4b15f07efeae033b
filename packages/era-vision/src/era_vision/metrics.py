"""Classification metrics: accuracy, NLL, calibration and predictive entropy.

Pure functions take a batch of logits ``(N, C)`` and integer labels ``(N,)`` and return Python
floats; :class:`ClassificationMetrics` accumulates the same quantities over batches (streaming
evaluation) and gives exactly the values the pure functions give on the concatenated batches.
The logits are whatever the model outputs (ERA logits ``z'`` for an ERA model): predictions are
``softmax(logits)``.

Definitions (``p = softmax(logits)``, ``y`` the label):

* top-k accuracy: fraction of samples whose label is among the ``k`` largest logits (``k`` is
  capped at the number of classes); for top-1 a tie goes to the lowest class index (``argmax``),
  for top-k to whichever ``torch.topk`` returns;
* NLL: mean of ``-log p_y``;
* expected calibration error (Guo et al., 2017): confidence ``c = max_i p_i``, 15 equal-width
  bins ``B_b = {c in (b/15, (b+1)/15]}``, ``ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``;
* predictive entropy ``H(p) = -sum_i p_i log p_i`` (nats): its mean and minimum.

Sums are kept in float64, so streaming over many batches loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "ClassificationMetrics",
    "ReliabilityBins",
    "classification_metrics",
    "expected_calibration_error",
    "nll",
    "predictive_entropy",
    "reliability_bins",
    "topk_accuracy",
]

N_BINS = 15


def _check(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets, device=logits.device)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(
            f"targets must have shape ({logits.shape[0]},) of class indices, got {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    return logits.detach(), targets.detach().long()


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.log_softmax(logits.to(dtype), dim=-1)


def _bin_edges(n_bins: int, device: torch.device | str) -> torch.Tensor:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=device)


def _bin_index(confidence: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin ``b`` holds ``confidence in (edges[b], edges[b+1]]`` (a confidence of 0 goes to bin 0)."""
    inner = _bin_edges(n_bins, confidence.device)[1:-1]
    return torch.bucketize(confidence.double(), inner, right=False)


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` largest logits."""
    logits, targets = _check(logits, targets)
    if k == 1:
        return (logits.argmax(dim=-1) == targets).double().mean().item()
    return _topk_correct(logits, targets, k).double().mean().item()


def _topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, logits.shape[-1])
    return (logits.topk(k, dim=-1).indices == targets[:, None]).any(dim=-1)


def nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean negative log-likelihood ``-log softmax(logits)[y]`` (nats)."""
    logits, targets = _check(logits, targets)
    log_p = _log_probs(logits)
    return (-log_p.gather(1, targets[:, None])).double().mean().item()


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy ``-sum p log p`` of ``softmax(logits)`` (nats), shape ``(N,)``."""
    log_p = _log_probs(torch.as_tensor(logits).detach())
    return -(log_p.exp() * log_p).nan_to_num(0.0).sum(-1)


def expected_calibration_error(
    logits: torch.Tensor, targets: torch.Tensor, n_bins: int = N_BINS
) -> float:
    """ECE over ``n_bins`` equal-width confidence bins (the standard definition, Guo et al.)."""
    return reliability_bins(logits, targets, n_bins).ece


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram.

    ``edges`` has ``n_bins + 1`` entries; ``count[b]``, ``accuracy[b]`` and ``confidence[b]``
    describe bin ``(edges[b], edges[b+1]]`` (accuracy and confidence are NaN for empty bins).
    """

    edges: list[float]
    count: list[int]
    accuracy: list[float]
    confidence: list[float]

    @property
    def ece(self) -> float:
        total = sum(self.count)
        if total == 0:
            return float("nan")
        return sum(
            n / total * abs(a - c)
            for n, a, c in zip(self.count, self.accuracy, self.confidence, strict=True)
            if n
        )


def reliability_bins(
    logits: torch.Tensor, targets: torch.Tensor, n_bins: int = N_BINS
) -> ReliabilityBins:
    """Counts, accuracy and mean confidence per equal-width confidence bin."""
    acc = ClassificationMetrics(n_bins=n_bins)
    acc.update(logits, targets)
    return acc.reliability()


def classification_metrics(
    logits: torch.Tensor, targets: torch.Tensor, n_bins: int = N_BINS
) -> dict[str, float]:
    """All metrics of one batch: see :meth:`ClassificationMetrics.compute` for the keys."""
    acc = ClassificationMetrics(n_bins=n_bins)
    acc.update(logits, targets)
    return acc.compute()


class ClassificationMetrics:
    """Streaming accumulator: ``update(logits, targets)`` per batch, then ``compute()``.

    ``compute()`` returns ``count``, ``top1``, ``top5`` (fractions in [0, 1]), ``nll``, ``ece``,
    ``entropy_mean`` and ``entropy_min``; equal to the pure functions on all batches at once.
    ``merge(other)`` adds another accumulator's samples (e.g. one accumulator per worker).

    Example:
      >>> import torch
      >>> m = ClassificationMetrics()
      >>> m.update(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 0]))
      >>> m.compute()["top1"]
      0.5
    """

    def __init__(self, n_bins: int = N_BINS) -> None:
        _bin_edges(n_bins, "cpu")
        self.n_bins = n_bins
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.correct1 = 0
        self.correct5 = 0
        self.nll_sum = 0.0
        self.entropy_sum = 0.0
        self.entropy_min = float("inf")
        self.bin_count = torch.zeros(self.n_bins, dtype=torch.float64)
        self.bin_correct = torch.zeros(self.n_bins, dtype=torch.float64)
        self.bin_confidence = torch.zeros(self.n_bins, dtype=torch.float64)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits, targets = _check(logits, targets)
        if logits.shape[0] == 0:
            return
        log_p = _log_probs(logits)
        p = log_p.exp()
        entropy = -(p * log_p).nan_to_num(0.0).sum(-1).double()
        confidence = p.max(dim=-1).values
        correct = (logits.argmax(dim=-1) == targets).double()
        index = _bin_index(confidence, self.n_bins)
        self.count += int(logits.shape[0])
        self.correct1 += int(correct.sum())
        self.correct5 += int(_topk_correct(logits, targets, 5).sum())
        self.nll_sum += float(-log_p.gather(1, targets[:, None]).double().sum())
        self.entropy_sum += float(entropy.sum())
        self.entropy_min = min(self.entropy_min, float(entropy.min()))
        self.bin_count += torch.bincount(index, minlength=self.n_bins).double().cpu()
        zeros = torch.zeros(self.n_bins, dtype=torch.float64, device=index.device)
        self.bin_correct += zeros.index_add(0, index, correct).cpu()
        self.bin_confidence += zeros.index_add(0, index, confidence.double()).cpu()

    def merge(self, other: ClassificationMetrics) -> ClassificationMetrics:
        """Add ``other``'s samples to this accumulator (same ``n_bins``); returns ``self``."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"n_bins differ: {self.n_bins} and {other.n_bins}")
        self.count += other.count
        self.correct1 += other.correct1
        self.correct5 += other.correct5
        self.nll_sum += other.nll_sum
        self.entropy_sum += other.entropy_sum
        self.entropy_min = min(self.entropy_min, other.entropy_min)
        self.bin_count += other.bin_count
        self.bin_correct += other.bin_correct
        self.bin_confidence += other.bin_confidence
        return self

    def reliability(self) -> ReliabilityBins:
        count = self.bin_count
        safe = count.clamp(min=1.0)
        nan = torch.full_like(count, float("nan"))
        return ReliabilityBins(
            edges=_bin_edges(self.n_bins, "cpu").tolist(),
            count=[int(c) for c in count.tolist()],
            accuracy=torch.where(count > 0, self.bin_correct / safe, nan).tolist(),
            confidence=torch.where(count > 0, self.bin_confidence / safe, nan).tolist(),
        )

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("no samples: call update() before compute()")
        n = self.count
        return {
            "count": n,
            "top1": self.correct1 / n,
            "top5": self.correct5 / n,
            "nll": self.nll_sum / n,
            "ece": self.reliability().ece,
            "entropy_mean": self.entropy_sum / n,
            "entropy_min": self.entropy_min,
        }
