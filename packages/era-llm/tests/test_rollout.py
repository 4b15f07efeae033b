"""Rollout backends (era_llm.rollout): the response mask, HF sampling's layout, the factory."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from era_llm.rollout import ROLLOUT_KINDS, HFRollout, Rollout, make_rollout, response_mask
from era_llm.toy import char_tokenizer, tiny_causal_lm


def test_response_mask_ends_at_the_first_eos():
    ids = torch.tensor([[4, 2, 2, 9], [2, 5, 5, 5], [7, 8, 9, 6]])
    assert response_mask(ids, eos_id=2).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]


def test_hf_rollout_is_prompt_major_left_padded_and_masked():
    tok = char_tokenizer()
    model = tiny_causal_lm(tok, seed=1)
    torch.manual_seed(0)
    roll = HFRollout(model, tok).generate(["1+2=", "12+34="], 3, max_new_tokens=4)
    assert isinstance(roll, Rollout)
    assert roll.response_ids.shape[0] == roll.prompt_ids.shape[0] == 6 and len(roll.texts) == 6
    assert roll.prompt_mask[0, 0] == 0 and roll.prompt_mask[3, 0] == 1  # left padding
    assert torch.equal(roll.prompt_ids[0], roll.prompt_ids[2])  # row p * n + j: prompt p
    off = ~roll.response_mask.bool()
    assert (roll.response_ids[off] == tok.pad_token_id).all()
    want = response_mask(roll.response_ids.masked_fill(off, tok.eos_token_id), tok.eos_token_id)
    assert torch.equal(roll.response_mask, want * roll.response_mask)
    assert model.training  # generate() restores the mode it found


def test_greedy_rollout_repeats_one_response_per_prompt():
    tok = char_tokenizer()
    engine = make_rollout("hf", tiny_causal_lm(tok, seed=2), tok)
    roll = engine.generate(["3+4="], 3, max_new_tokens=3, greedy=True)
    assert roll.texts[0] == roll.texts[1] == roll.texts[2]


def test_factory_checks_the_kind_and_imports_vllm_only_when_asked():
    assert ROLLOUT_KINDS == ("hf", "vllm")
    code = "import sys, era_llm.rollout; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)  # vLLM is imported only when asked
    with pytest.raises(ValueError, match="rollout kind must be one of"):
        make_rollout("sglang", None, None)
    with pytest.raises(ValueError, match="needs a checkpoint directory"):
        make_rollout("vllm", None, None)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            make_rollout("vllm", None, None, "/some/checkpoint")
