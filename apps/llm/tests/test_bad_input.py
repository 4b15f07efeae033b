"""era-llm-train on bad input, one test per class of fault: exit 2, one error line naming the
argument, no traceback, and no run directory left looking started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from era_llm_app.cli import main

from era_core.testing import assert_nothing_made, copy_run, error_line, unusable_outs

# The smallest run that writes a checkpoint: what --resume cases start from.
TINY = ["--quick", "--steps", "1", "--warmup-steps", "1", "--eval-size", "4", "--no-tensorboard"]
TINY += ["--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4"]


def _fails(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    err = capsys.readouterr().err
    return error_line(caught.value.code, err, "era-llm-train", message, one_line=False)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    assert main(["--out", str(out), *TINY]) == 0
    return out


def test_unusable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for out, message in unusable_outs(tmp_path):
        line = _fails(["--out", str(out), *TINY], message, capsys)
        assert str(out) in line
    assert_nothing_made(tmp_path)


def test_values_that_slip_past_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    for flags, message in [
        (["--seed", "-1"], "--seed -1 must be >= 0"),
        (["--ckpt-every", "0"], "--ckpt-every 0 must be >= 1"),
        (["--eval-every", "0"], "--eval-every 0 must be >= 1"),
        (["--threads", "-2"], "--threads -2 must be >= 0"),
        (
            ["--compare", "--seeds", "0", "--pass-at-k-prompts", "-1"],
            "--pass-at-k-prompts -1 is not valid",
        ),
        (
            ["--compare", "--seeds", "0", "--pass-at-k-prompts", "5"],
            "--pass-at-k-prompts 5 is not valid: it must be between 0 (off) and --eval-size 4",
        ),
    ]:
        _fails(["--out", str(out), *TINY, *flags], message, capsys)
        assert not out.exists()


def test_unreadable_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {
        "latin.jsonl": ('{"prompt": "caf\u00e9", "answer": "1"}\n'.encode("latin-1"), "not UTF-8"),
        "list.jsonl": (b'{"prompt": "1+1=", "answer": "2"}\n[1]\n', "line 2 holds a JSON list"),
        "garbage.jsonl": (b"{not json\n", "line 1 is not JSON"),
        "empty.jsonl": (b"\n", "no rows"),
    }
    out = tmp_path / "run"
    for name, (content, message) in files.items():
        (tmp_path / name).write_bytes(content)
        _fails(["--out", str(out), *TINY, "--data", str(tmp_path / name)], message, capsys)
        assert not out.exists()


def test_broken_checkpoints_and_configs_on_resume(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = {
        "empty checkpoint": ("checkpoint.pt", b"", "is empty"),
        "truncated checkpoint": ("checkpoint.pt", None, "cannot be read"),
        "config not JSON": ("config.json", b"{", "is not valid JSON"),
        "config not an object": ("config.json", b"[1]", "must hold a JSON object"),
    }
    for i, (name, content, message) in enumerate(faults.values()):
        run = copy_run(finished_run, tmp_path / f"r{i}")
        if content is None:
            content = (run / name).read_bytes()[:64]
        (run / name).write_bytes(content)
        before = sorted((p.name, p.stat().st_size) for p in run.iterdir())
        _fails(["--out", str(run), "--resume", *TINY, "--steps", "2"], message, capsys)
        assert sorted((p.name, p.stat().st_size) for p in run.iterdir()) == before
    edited = copy_run(finished_run, tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "lr": config["lr"] * 2}))
    _fails(["--out", str(edited), "--resume", *TINY, "--steps", "2"], "--lr cannot change", capsys)


def test_resume_needs_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for out in (tmp_path / "absent", tmp_path):
        _fails(["--out", str(out), "--resume", *TINY], "no run to resume there", capsys)
    assert not (tmp_path / "absent").exists()


def test_a_moved_run_stays_resumable(finished_run: Path, tmp_path: Path) -> None:
    moved = copy_run(finished_run, tmp_path / "moved")
    assert main(["--out", str(moved), "--resume", *TINY, "--steps", "2"]) == 0
    assert (moved / "DONE").is_file()
    assert not list(moved.glob(".*.tmp")), "a checkpoint's temporary file survived"


def test_a_finished_run_resumed_without_new_steps_rewrites_nothing(
    finished_run: Path, tmp_path: Path
) -> None:
    run = copy_run(finished_run, tmp_path / "again")
    stamps = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    assert main(["--out", str(run), "--resume", *TINY]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()} == stamps


def test_eval_of_a_run_dir_without_a_usable_checkpoint(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """era-llm-eval --model RUN: a run without checkpoint.pt, a corrupt one, one without
    heldout.jsonl and no --data: exit 2, one error line, no results written."""
    from era_llm_app.cli import eval_main

    faults = {
        "no checkpoint": ("checkpoint.pt", None, "a compact-trainer run without checkpoint.pt"),
        "truncated": ("checkpoint.pt", 64, "checkpoint.pt cannot be loaded"),
        "empty": ("checkpoint.pt", 0, "checkpoint.pt cannot be loaded"),
        "no heldout": ("heldout.jsonl", None, "the run has no heldout.jsonl"),
    }
    for i, (name, size, message) in enumerate(faults.values()):
        run = copy_run(finished_run, tmp_path / f"r{i}")
        if size is None:
            (run / name).unlink()
        else:
            (run / name).write_bytes((run / name).read_bytes()[:size])
        out = tmp_path / f"eval{i}"
        with pytest.raises(SystemExit) as caught:
            eval_main(["--model", str(run), "--mode", "sampled", "--out", str(out)])
        line = error_line(
            caught.value.code, capsys.readouterr().err, "era-llm-eval", message, one_line=False
        )
        assert str(run) in line
        assert not out.exists()


def test_eval_of_a_run_dir_refuses_flags_the_run_fixes(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """era-llm-eval --model RUN with a sampling flag the run's own settings decide (or the
    paper's mode): refused, not ignored; exit 2, one line naming the flag, nothing written."""
    from era_llm_app.cli import eval_main

    for i, (flags, name) in enumerate(
        [
            (["--k", "16"], "--k 16"),
            (["--temperature", "0.5"], "--temperature 0.5"),
            (["--max-new-tokens", "7"], "--max-new-tokens 7"),
            (["--mode", "paper"], "--mode paper"),
        ]
    ):
        out = tmp_path / f"eval{i}"
        with pytest.raises(SystemExit) as caught:
            eval_main(["--model", str(finished_run), *flags, "--out", str(out)])
        err = capsys.readouterr().err
        error_line(caught.value.code, err, "era-llm-eval", name, one_line=False)
        assert not out.exists()
