"""A headless OpenGL backend for MuJoCo when there is no display.

dm-control and MuJoCo pick their OpenGL backend from ``MUJOCO_GL`` when they are first
imported; left unset on a machine without a display, dm-control tries GLFW first and prints
``GLFWError: ... DISPLAY environment variable is missing`` before falling back. Training never
renders, so without a display we choose a headless backend up front: EGL when its library is
installed, else OSMesa, else none (``disabled``). An explicit ``MUJOCO_GL`` always wins, and
with a display (``DISPLAY`` or ``WAYLAND_DISPLAY``) nothing is set.
"""

from __future__ import annotations

import ctypes.util
import os

HEADLESS_BACKENDS = (("egl", "EGL"), ("osmesa", "OSMesa"))


def headless_backend() -> str:
    """The first headless backend whose library is installed, else ``"disabled"``."""
    for backend, library in HEADLESS_BACKENDS:
        if ctypes.util.find_library(library):
            return backend
    return "disabled"


def default_headless_gl(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Set ``MUJOCO_GL`` to a headless backend when it is unset and there is no display.

    Returns the value ``MUJOCO_GL`` holds afterwards (``None`` when it stays unset).
    """
    if "MUJOCO_GL" not in environ and not (
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
    ):
        environ["MUJOCO_GL"] = headless_backend()
    return environ.get("MUJOCO_GL")
