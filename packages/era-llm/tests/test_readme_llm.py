"""The era_llm example in the repository README runs and prints what it says
(the fixture is in the repository's conftest.py)."""


def test_readme_example(run_readme_example):
    *scales, frac_inside = run_readme_example("era_llm")
    assert len(scales) == 4 and set(scales) <= {0.5, 1.0, 2.0}
    assert 0.0 <= frac_inside <= 1.0
