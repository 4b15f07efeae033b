"""The era_control example in the repository README runs and prints what it says
(the fixture is in the repository's conftest.py)."""


def test_readme_example(run_readme_example):
    gaussian_min, truncated_mean = run_readme_example("era_control")
    assert abs(gaussian_min - (-3.0)) < 1e-4  # the Gaussian entropy sits at H0 = 6 * -0.5
    assert -3.0 - 6 * 0.7 < truncated_mean < -3.0  # truncation lowers it, by < log 2 per dim
