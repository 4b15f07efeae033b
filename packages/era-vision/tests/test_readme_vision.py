"""The era_vision example in the repository README runs and prints what it says
(the fixture is in the repository's conftest.py)."""


def test_readme_example(run_readme_example):
    (entropy_min,) = run_readme_example("era_vision")
    assert entropy_min >= 0.6
