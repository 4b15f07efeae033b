"""era-reproduce --help: every flag has a help line that shows its default."""

from __future__ import annotations

import pytest

from era_core.testing import console_scripts, help_problems, script_parser

DISTRIBUTION = "era-reproduce"


@pytest.mark.parametrize("script", console_scripts(DISTRIBUTION))
def test_every_flag_has_help_with_its_default(script: str) -> None:
    assert help_problems(script_parser(DISTRIBUTION, script)) == [], script
