"""Without a display, era_control picks a headless MuJoCo backend; an explicit one wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from era_control.envs import default_headless_gl, headless_backend


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "headless"),
        ({"MUJOCO_GL": "glfw"}, "glfw"),
        ({"MUJOCO_GL": "osmesa", "DISPLAY": ":0"}, "osmesa"),
        ({"DISPLAY": ":0"}, None),
        ({"WAYLAND_DISPLAY": "wayland-0"}, None),
        ({"DISPLAY": ""}, "headless"),
    ],
)
def test_default_headless_gl(environ, expected):
    environ = dict(environ)
    value = default_headless_gl(environ)
    if expected == "headless":
        expected = headless_backend()
        assert expected in {"egl", "osmesa", "disabled"}
    assert value == expected
    assert environ.get("MUJOCO_GL") == expected


def test_a_dmc_task_without_display_prints_no_glfw_error():
    env = {k: v for k, v in os.environ.items() if k not in {"MUJOCO_GL", "DISPLAY"}}
    code = (
        "import os, era_control.envs as e; "
        "env = e.make_env('dmc/cartpole-swingup'); env.reset(seed=0); print(os.environ['MUJOCO_GL'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GLFWError" not in done.stderr
    assert done.stdout.strip() == headless_backend()
