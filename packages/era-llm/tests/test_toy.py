"""The synthetic task, the character tokenizer and the tiny LM (save/load round trips)."""

import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from era_llm.toy import ArithmeticTask, SplitTask, char_tokenizer, tiny_causal_lm
from era_llm.verify import exact_match_reward

TOK = char_tokenizer()


@given(
    op=st.sampled_from(["+", "-", "*"]),
    digits=st.tuples(st.integers(1, 4), st.integers(1, 4)).map(sorted),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=50, deadline=None)
def test_task_answers_are_exact_and_in_range(op, digits, seed):
    task = ArithmeticTask(op=op, min_digits=digits[0], max_digits=digits[1])
    for p in task.sample(np.random.default_rng(seed), 5):
        a, b = p.prompt[:-1].split(op, 1) if op != "-" else p.prompt[:-1].split("-", 1)
        assert digits[0] <= len(a) <= digits[1] and digits[0] <= len(b) <= digits[1]
        expected = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert p.answer == str(expected)
        assert exact_match_reward(p.answer, p.answer) == 1.0
        assert len(p.answer) <= task.max_answer_chars()


def test_task_is_reproducible_from_generator_state():
    task = ArithmeticTask()
    rng = np.random.default_rng(3)
    rng.integers(10)
    state = rng.bit_generator.state
    first = task.sample(rng, 8)
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = state
    assert task.sample(rng2, 8) == first


@pytest.mark.parametrize(
    "kwargs", [{"op": "/"}, {"min_digits": 0}, {"min_digits": 3, "max_digits": 2}]
)
def test_task_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=r"op|digits"):
        ArithmeticTask(**kwargs)


@given(st.text(alphabet=string.printable[:95] + "\n", max_size=40))
@settings(max_examples=100, deadline=None)
def test_tokenizer_is_character_level_and_round_trips(text):
    ids = TOK(text)["input_ids"]
    assert len(ids) == len(text)
    assert TOK.decode(ids) == text


def test_tokenizer_specials_and_unknown_characters():
    assert (TOK.pad_token_id, TOK.eos_token_id, TOK.unk_token_id) == (0, 1, 2)
    assert TOK("é")["input_ids"] == [TOK.unk_token_id]
    assert TOK.decode([*TOK("12")["input_ids"], TOK.eos_token_id], skip_special_tokens=True) == "12"


def test_tiny_model_saves_and_loads_with_tokenizer(tmp_path):
    model = tiny_causal_lm(TOK, seed=1)
    model.save_pretrained(tmp_path)
    TOK.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = "12 + 3 = \\boxed{15}"
    assert tok(text)["input_ids"] == TOK(text)["input_ids"]  # spaces survive the reload
    ids = torch.tensor([TOK(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_tiny_model_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = (tiny_causal_lm(TOK, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), before)
    pa, pb, pc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


@given(digits=st.tuples(st.integers(1, 3), st.integers(1, 3)).map(sorted), seed=st.integers(0, 99))
@settings(max_examples=30, deadline=None)
def test_split_task_demonstrations_are_valid_and_varied(digits, seed):
    task = SplitTask(min_digits=digits[0], max_digits=digits[1])
    rng = np.random.default_rng(seed)
    for p in task.sample(rng, 5):
        assert p.prompt == f"{p.answer}=" and digits[0] <= len(p.answer) <= digits[1]
        shown = {task.demonstration(p, rng) for _ in range(40)}
        assert all(task.reward(d, p.answer) == 1.0 for d in shown)
        assert all(len(d) <= task.max_answer_chars() for d in shown)
        assert len(shown) > 1 or int(p.answer) == 0  # several valid answers are shown


def test_split_task_reward_rejects_wrong_or_malformed_answers():
    assert SplitTask.reward("3+4\nmore", "7") == 1.0
    for bad in ("3+5", "7", "3+4+0", "-1+8", "a+7", "+7", ""):
        assert SplitTask.reward(bad, "7") == 0.0, bad
    with pytest.raises(ValueError, match="digits"):
        SplitTask(min_digits=0)
