"""What `bench/gpu_check.py` and its section modules (`bench/gpu_check_<section>.py`) share.

* the sections, their time budgets and the third-party modules each may import directly
  (`SECTION_IMPORTS`), with where each comes from on the GPU machine: preinstalled there
  (`DEVICE_HAS`) or carried to it as a wheel by `tools/make_device_bundle.py` (`CARRIED`);
* `source_paths` / `metadata_stubs`: running our packages from source, without installing them;
* `ImportRecorder`: which third-party modules our own code imports, checked against the list;
* `Report`: one section's results, saved as ``<section>.json`` and ``<section>.md``.

Standard library only at module level: the driver imports this before any framework.
"""

from __future__ import annotations

import builtins
import datetime
import dis
import importlib
import json
import re
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

SECTIONS = ("env", "control", "vision", "llm")
# Seconds each section may run on the GPU machine (its process is stopped after that); they sum
# to 530 s, the script's total (TOTAL_BUDGET_S), under the device's 10-minute command.
BUDGET_S = {"env": 30.0, "control": 130.0, "vision": 190.0, "llm": 180.0}
TOTAL_BUDGET_S = 530.0
# The dry run (CPU, CI) takes seconds per section; this only stops a hung one.
DRY_RUN_BUDGET_S = 600.0

# Third-party modules (top-level import names) that our code -- this script, the bench modules
# it reuses, packages/*/src and apps/*/src -- may import directly in each section. era_core
# imports numpy and array_api_compat in every section, and threadpoolctl where it is installed
# (era_core.threads limits NumPy's BLAS pools with it).
COMMON_IMPORTS = ("numpy", "array_api_compat", "threadpoolctl")
SECTION_IMPORTS: dict[str, tuple[str, ...]] = {
    "env": ("torch", "jax", "jaxlib"),
    "control": ("jax", "flax", "optax"),
    "vision": ("torch", "timm"),
    "llm": ("torch", "transformers", "tokenizers", "tqdm", "liger_kernel", "cut_cross_entropy"),
}
# Import name -> distribution preinstalled for the GPU machine's python3 (the package list of
# its image, as the device's documentation gives it).
DEVICE_HAS = {
    "numpy": "numpy",
    "torch": "torch",
    "jax": "jax",
    "jaxlib": "jaxlib",
    "flax": "flax",
    "optax": "optax",
    "timm": "timm",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "tqdm": "tqdm",
    "triton": "triton",
}
# Import name -> (distribution, pinned version or None for uv.lock's, required). A required
# one is imported unconditionally (the check fails without it); an optional one is measured
# when present and reported as absent otherwise.
CARRIED: dict[str, tuple[str, str | None, bool]] = {
    "array_api_compat": ("array-api-compat", None, True),
    "threadpoolctl": ("threadpoolctl", None, False),
    "liger_kernel": ("liger-kernel", "0.8.5", False),
    "cut_cross_entropy": ("cut-cross-entropy", "25.1.1", False),
}
# Where tools/make_device_bundle.py puts the wheels and the commit (ignored by git, carried).
BUNDLE_DIR = ".device-bundle"
# A file name the device tool brings back: letters, digits, '.', '_' and '-'.
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_OUT_FILES = 8


def allowed_imports(section: str) -> set[str]:
    return {*COMMON_IMPORTS, *SECTION_IMPORTS[section]}


def carried_requirements() -> list[tuple[str, str, bool]]:
    """``(distribution, version, required)`` of every carried wheel (versions from uv.lock
    where `CARRIED` pins none)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    out = []
    for dist, version, required in CARRIED.values():
        pin = version or locked.get(dist)
        if pin is None:
            raise ValueError(f"carried wheel {dist!r}: no version pinned and none in uv.lock")
        out.append((dist, pin, required))
    return out


# ---------------------------------------------------------------------------------------------
# our packages from source


def source_paths() -> list[Path]:
    """bench/, then every ``packages/*/src`` and ``apps/*/src`` of the repository."""
    return [BENCH, *sorted(ROOT.glob("packages/*/src")), *sorted(ROOT.glob("apps/*/src"))]


def _project(pyproject: Path) -> tuple[str, str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return project["name"], str(project.get("version", "0"))


def metadata_stubs() -> Path | None:
    """A directory of minimal ``*.dist-info`` for the workspace members that are not installed.

    Our packages read their own ``__version__`` with `importlib.metadata.version`, which needs
    installed metadata; from source (the GPU machine has no environment of ours) these stubs
    give it. Returns the directory to put on ``sys.path``, or None when every member is installed.
    """
    missing = []
    for pyproject in sorted([*ROOT.glob("packages/*/pyproject.toml"),
                             *ROOT.glob("apps/*/pyproject.toml")]):  # fmt: skip
        name, version = _project(pyproject)
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append((name, version))
    if not missing:
        return None
    stubs = Path(tempfile.mkdtemp(prefix="gpu-check-metadata-"))
    for name, version in missing:
        info = stubs / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return stubs


def use_source(stubs: Path | None) -> None:
    for path in reversed(source_paths()):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    if stubs is not None and str(stubs) not in sys.path:
        sys.path.append(str(stubs))


# ---------------------------------------------------------------------------------------------
# the import check


IMPORT_NAME = dis.opmap["IMPORT_NAME"]


def bench_modules() -> set[str]:
    return {p.stem for p in BENCH.glob("*.py")}


class ImportRecorder:
    """Records every third-party module that first-party code imports (``import``, ``from ...
    import`` or `importlib.import_module`, wherever the statement stands, attempted imports that
    fail included). First-party: the ``era_*`` packages, the bench modules and ``__main__``.
    What the frameworks import in turn is theirs, and is not recorded."""

    def __init__(self) -> None:
        self.imported: set[str] = set()
        self._first_party = bench_modules() | {"__main__"}
        self._stdlib = set(sys.stdlib_module_names)

    def _is_first_party(self, module: str) -> bool:
        top = module.partition(".")[0]
        return top.startswith("era_") or top in self._first_party

    def _note(self, importer: str, name: str) -> None:
        top = name.partition(".")[0]
        if not top or top in self._stdlib or top == "__future__" or self._is_first_party(top):
            return
        if self._is_first_party(importer):
            self.imported.add(top)

    def install(self) -> None:
        original_import = builtins.__import__
        original_import_module = importlib.import_module
        note = self._note

        def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
            # Only an `import` statement's own call: an import made from C (an extension
            # module importing what it needs) also lands here, under the innermost Python
            # frame, which may be ours.
            frame = sys._getframe(1)
            if level == 0 and frame.f_code.co_code[frame.f_lasti] == IMPORT_NAME:
                note(str(frame.f_globals.get("__name__", "")), name)
            return original_import(name, globals, locals, fromlist, level)

        def recording_import_module(name: str, package: str | None = None):
            if not name.startswith("."):
                note(str(sys._getframe(1).f_globals.get("__name__", "")), name)
            return original_import_module(name, package)

        builtins.__import__ = recording_import
        importlib.import_module = recording_import_module

    def summary(self, section: str) -> dict[str, Any]:
        allowed = allowed_imports(section)
        return {
            "imported": sorted(self.imported),
            "allowed": sorted(allowed),
            "disallowed": sorted(self.imported - allowed),
        }


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> list[str]:
        lines = [f"### {self.title}", ""] if self.title else []
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return lines


@dataclass
class Report:
    """One section's results: measurements (``results``), tables, notes and a headline.

    `save` writes ``<out>/<section>.json`` and, but for the environment section (whose table
    opens ``gpu-check.md``), ``<out>/<section>.md``; sections save after every measurement, so a
    section stopped at its budget still leaves what it measured.
    """

    section: str
    out: Path
    dry_run: bool
    status: str = "running"
    headline: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, header: list[str]) -> Table:
        table = Table(title, header)
        self.tables.append(table)
        return table

    def to_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "dry_run": self.dry_run,
            "status": self.status,
            "headline": self.headline,
            "results": self.results,
            "tables": [vars(t) for t in self.tables],
            "notes": self.notes,
            **self.extra,
        }

    @classmethod
    def load(cls, out: Path, section: str, dry_run: bool) -> Report:
        path = out / f"{section}.json"
        if not path.exists():
            return cls(section, out, dry_run)
        data = json.loads(path.read_text())
        known = {"section", "dry_run", "status", "headline", "results", "tables", "notes"}
        return cls(
            section,
            out,
            dry_run,
            status=data.get("status", "running"),
            headline=data.get("headline", ""),
            results=data.get("results", {}),
            tables=[Table(**t) for t in data.get("tables", [])],
            notes=data.get("notes", []),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def markdown(self) -> str:
        lines = [f"## {self.section}: {self.status}", ""]
        if self.headline:
            lines += [self.headline, ""]
        for table in self.tables:
            lines += [*table.markdown(), ""]
        lines += [f"* {note}" for note in self.notes]
        if self.extra.get("error"):
            lines += ["", "Error:", "", "```", self.extra["error"].rstrip(), "```"]
        return "\n".join(lines).rstrip() + "\n"

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{self.section}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, default=str) + "\n")
        tmp.replace(path)
        if self.section != "env":
            (self.out / f"{self.section}.md").write_text(self.markdown())


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def use_eager_compile() -> None:
    """Dry run: `torch.compile` traces with Dynamo but runs the captured graphs eagerly.

    On a CPU, Inductor builds C++ kernels, which takes minutes at any size; the dry run checks
    the code path (tracing, guards, our compiled kernels' signatures), not the kernels' speed.
    """
    import torch

    compile_ = torch.compile
    if getattr(compile_, "gpu_check_eager", False):
        return

    def eager_compile(*args: Any, **kwargs: Any) -> Callable:
        kwargs["backend"] = "eager"
        return compile_(*args, **kwargs)

    eager_compile.gpu_check_eager = True  # type: ignore[attr-defined]
    torch.compile = eager_compile  # type: ignore[assignment]


def output_problems(out: Path, sections: list[str]) -> list[str]:
    """What is wrong with a finished run's ``out`` folder (empty: nothing): every selected
    section ``ok`` with a clean import check, its files present, at most `MAX_OUT_FILES`
    files, each with a name the device tool brings back."""
    problems = []
    files = sorted(p.name for p in out.iterdir())
    if len(files) > MAX_OUT_FILES:
        problems.append(f"{len(files)} files in {out} (at most {MAX_OUT_FILES}): {files}")
    problems += [f"file name {name!r} would not come back" for name in files
                 if not SAFE_NAME.match(name)]  # fmt: skip
    summary = out / "gpu-check.md"
    text = summary.read_text() if summary.exists() else ""
    if not text:
        problems.append("no gpu-check.md")
    for section in sections:
        path = out / f"{section}.json"
        if not path.exists():
            problems.append(f"no {section}.json")
            continue
        data = json.loads(path.read_text())
        if data["status"] != "ok":
            problems.append(f"{section}: status {data['status']}: {data.get('error', '')}")
        imports = data.get("imports") or {}
        if imports.get("disallowed") or not imports:
            problems.append(f"{section}: import check: {imports}")
        if section != "env" and not (out / f"{section}.md").exists():
            problems.append(f"no {section}.md")
        if f"| {section} | " not in text:
            problems.append(f"gpu-check.md has no summary row for {section}")
    return problems


def dry_run_section(section: str, out: Path, *, timeout: float = 1300) -> dict[str, Any]:
    """Run ``gpu_check.py --dry-run --only env,<section>`` into ``out`` (what each domain's
    test of the check does); raise AssertionError on any output problem or a failed exit, and
    return the section's JSON."""
    import subprocess

    sections = ["env", section]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out),
         "--only", ",".join(sections), "--dry-run"],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    problems = output_problems(out, sections)
    assert problems == [], proc.stdout[-4000:]
    assert proc.returncode == 0, proc.stdout[-4000:]
    data = json.loads((out / f"{section}.json").read_text())
    assert data["dry_run"] and data["tables"] and data["headline"]
    return data
