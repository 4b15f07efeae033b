"""The console scripts' --help: every flag has a help line that shows its default, and
``era-vision-train --help`` needs neither torch nor timm (it answers at once)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from era_core.testing import console_scripts, help_problems, script_parser

DISTRIBUTION = "era-vision-app"


@pytest.mark.parametrize("script", console_scripts(DISTRIBUTION))
def test_every_flag_has_help_with_its_default(script: str) -> None:
    assert help_problems(script_parser(DISTRIBUTION, script)) == [], script


def test_the_command_line_needs_no_torch() -> None:
    code = (
        "import sys; import era_vision_app.cli as cli; cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out
