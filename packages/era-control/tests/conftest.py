import os
import tempfile

os.environ.setdefault("MUJOCO_GL", "egl")
# Tests compile many small programs; a persistent cache makes re-runs (and repeated configs) cheap.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "era-control-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
