r"""Per-token log-probs and entropies under a per-response logit scale, in chunks (docs/paper.md §3).

For logits :math:`z \in \mathbb{R}^{B\times T\times V}`, labels :math:`a` and a per-response
scale :math:`c_b` (ERA's :math:`c \in \{k, 1, 1/k\}`, i.e. a temperature :math:`1/c_b`):

.. math::

    \log\pi'(a_{bt}) = c_b z_{bt,a} - \log\sum_v e^{c_b z_{bt,v}}, \qquad
    H_{bt} = -\sum_v p_v \log p_v,\; p = \mathrm{softmax}(z_{bt})

``H`` is the entropy of the **unscaled** full softmax, the statistic ERA's band is defined on;
both come from the same pass. The work runs over chunks of rows of the sequence, each cast to
float32 on its own, so no float32 copy of the whole ``[B, T, V]`` tensor is made; a custom
``autograd.Function`` keeps only the per-row log-partition for backward and recomputes the
softmax chunk by chunk there. Positions where ``mask`` is 0 are skipped where they form the
ends of a response (left or right padding) and give 0 everywhere.

Top-k (the paper's first stage): the log-prob is taken after keeping the ``k`` largest logits of
each token (the scale is positive, so they are also the ``k`` largest scaled logits) and
renormalising over them. A label outside the top ``k`` is kept as a ``(k+1)``-th candidate: its
log-prob is renormalised over the ``k`` largest logits **plus its own**, a finite value (at most
:math:`\log\frac{1}{2}` below the top-k mass) with a well-defined gradient, rather than
:math:`-\infty`, which would turn a PPO ratio into NaN.

Modules (all private; this package re-exports the public names):

* ``_api``: :func:`token_logprobs`, :func:`token_logprobs_from_hidden`, :class:`TokenStats` and
  the argument checks;
* ``_chunks``: chunk planning (which rows go into which chunk, at which scale);
* ``_sources``: row sources, where a chunk's logit rows come from and their gradient goes
  (given logits, or hidden states times the head weight);
* ``_function``: the one ``autograd.Function`` over a row source;
* ``_kernels``: the math of one chunk (full softmax and top-k, forward and backward);
* ``_strategy``: ``ChunkKernels``, the choice between running those kernels eagerly and
  through ``torch.compile``.
"""

from era_llm.ops._api import TokenStats, token_logprobs, token_logprobs_from_hidden
from era_llm.ops._chunks import default_chunk_size

__all__ = ["TokenStats", "default_chunk_size", "token_logprobs", "token_logprobs_from_hidden"]
