"""era-vision-train's command line: the flags stay those of the hand-written parser it
replaced, and --help shows every default."""

from __future__ import annotations

from dataclasses import fields

import pytest
from era_vision_app.cli import RunOptions, build_parser, main
from era_vision_app.config import TrainConfig

# (option string, dest, nargs, type, choices, action class) of every option of the parser that
# ``era_core.cli`` now generates, as the hand-written one defined them.
FLAGS = {
    ("-h", "help", 0, None, None, "_HelpAction"),
    ("--out", "out", None, "Path", None, "_StoreAction"),
    ("--resume", "resume", None, "Path", None, "_StoreAction"),
    ("--preset", "preset", None, None, None, "_StoreAction"),
    ("--list-presets", "list_presets", 0, None, None, "_StoreTrueAction"),
    ("--quick", "quick", 0, None, None, "_StoreTrueAction"),
    ("--seeds", "seeds", "+", "int", None, "_StoreAction"),
    ("--arms", "arms", "+", None, None, "_StoreAction"),
    ("--stop-after", "stop_after", None, "int", None, "_StoreAction"),
    ("--no-progress", "no_progress", 0, None, None, "_StoreTrueAction"),
    ("--model", "model", None, None, None, "_StoreAction"),
    ("--era", "era", 0, None, None, "BooleanOptionalAction"),
    ("--min-entropy", "min_entropy", None, "float", None, "_StoreAction"),
    ("--tau", "tau", None, "float", None, "_StoreAction"),
    ("--era-mode", "era_mode", None, None, ("paper", "exact"), "_StoreAction"),
    ("--drop-rate", "drop_rate", None, "float", None, "_StoreAction"),
    ("--drop-path-rate", "drop_path_rate", None, "float", None, "_StoreAction"),
    ("--data-dir", "data_dir", None, None, None, "_StoreAction"),
    ("--dataset", "dataset", None, None, ("digits", "cifar10", "imagenet"), "_StoreAction"),
    ("--num-classes", "num_classes", None, "int", None, "_StoreAction"),
    ("--img-size", "img_size", None, "int", None, "_StoreAction"),
    ("--aug", "aug", 0, None, None, "BooleanOptionalAction"),
    ("--auto-augment", "auto_augment", None, None, None, "_StoreAction"),
    ("--re-prob", "re_prob", None, "float", None, "_StoreAction"),
    ("--color-jitter", "color_jitter", None, "float", None, "_StoreAction"),
    ("--hflip", "hflip", None, "float", None, "_StoreAction"),
    ("--scale", "scale", 2, "float", None, "_StoreAction"),
    ("--crop-pct", "crop_pct", None, "float", None, "_StoreAction"),
    ("--mixup", "mixup", None, "float", None, "_StoreAction"),
    ("--cutmix", "cutmix", None, "float", None, "_StoreAction"),
    ("--workers", "workers", None, "int", None, "_StoreAction"),
    ("--limit-train-batches", "limit_train_batches", None, "int", None, "_StoreAction"),
    ("--limit-val-batches", "limit_val_batches", None, "int", None, "_StoreAction"),
    ("--epochs", "epochs", None, "int", None, "_StoreAction"),
    ("--batch-size", "batch_size", None, "int", None, "_StoreAction"),
    ("--eval-batch-size", "eval_batch_size", None, "int", None, "_StoreAction"),
    ("--opt", "opt", None, None, None, "_StoreAction"),
    ("--lr", "lr", None, "float", None, "_StoreAction"),
    ("--momentum", "momentum", None, "float", None, "_StoreAction"),
    ("--weight-decay", "weight_decay", None, "float", None, "_StoreAction"),
    ("--sched", "sched", None, None, None, "_StoreAction"),
    ("--warmup-epochs", "warmup_epochs", None, "int", None, "_StoreAction"),
    ("--warmup-lr", "warmup_lr", None, "float", None, "_StoreAction"),
    ("--min-lr", "min_lr", None, "float", None, "_StoreAction"),
    ("--label-smoothing", "label_smoothing", None, "float", None, "_StoreAction"),
    ("--ema", "ema", 0, None, None, "BooleanOptionalAction"),
    ("--ema-decay", "ema_decay", None, "float", None, "_StoreAction"),
    ("--device", "device", None, None, None, "_StoreAction"),
    ("--amp", "amp", 0, None, None, "BooleanOptionalAction"),
    ("--amp-dtype", "amp_dtype", None, None, ("bfloat16", "float16"), "_StoreAction"),
    ("--compile", "compile", 0, None, None, "BooleanOptionalAction"),
    ("--channels-last", "channels_last", 0, None, None, "BooleanOptionalAction"),
    ("--seed", "seed", None, "int", None, "_StoreAction"),
}
# the flags added since, described the same way: the hand-written ones above stay as they were
NEW_FLAGS = {
    ("--sync-bn", "sync_bn", 0, None, None, "BooleanOptionalAction"),
    ("--dist-bn", "dist_bn", None, None, ("reduce", "broadcast"), "_StoreAction"),
    ("--split-bn", "split_bn", 0, None, None, "BooleanOptionalAction"),
    ("--aug-splits", "aug_splits", None, "int", None, "_StoreAction"),
    ("--resplit", "resplit", 0, None, None, "BooleanOptionalAction"),
    ("--jsd-loss", "jsd_loss", 0, None, None, "BooleanOptionalAction"),
    ("--timm-dataset", "timm_dataset", None, None, None, "_StoreAction"),
    ("--train-split", "train_split", None, None, None, "_StoreAction"),
    ("--val-split", "val_split", None, None, None, "_StoreAction"),
    ("--threads", "threads", None, "int", None, "_StoreAction"),
    ("--label-noise", "label_noise", None, "float", None, "_StoreAction"),
}
ALL_FLAGS = FLAGS | NEW_FLAGS
OPTION_STRINGS = (
    {flag for flag, *_ in ALL_FLAGS}
    | {"--help"}
    | {f"--no-{flag[2:]}" for flag, *rest in ALL_FLAGS if rest[-1] == "BooleanOptionalAction"}
)


def test_the_flags_are_those_of_the_hand_written_parser():
    parser = build_parser()
    strings = {s for action in parser._actions for s in action.option_strings}
    assert strings == OPTION_STRINGS
    described = {
        (
            action.option_strings[0],
            action.dest,
            action.nargs,
            getattr(action.type, "__name__", None),
            tuple(action.choices) if action.choices else None,
            type(action).__name__,
        )
        for action in parser._actions
    }
    assert FLAGS <= described and described == ALL_FLAGS


def test_help_lists_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("(default: ") == len(ALL_FLAGS) - 1  # every option but --help
    for name in ("model", "min_entropy", "lr", "epochs", "label_smoothing", "seed"):
        default = getattr(TrainConfig(), name)
        assert f"(default: {default})" in text, name
    assert "(default: on)" in text and "(default: 0.6 1.0)" in text


def test_run_options_and_config_fields_do_not_overlap_on_the_command_line():
    parser = build_parser()
    args = parser.parse_args(["--out", "d", "--quick", "--preset", "x", "--lr", "0.5"])
    run_fields = {f.name for f in fields(RunOptions)}
    assert {"out", "quick", "preset"} <= run_fields
    from era_core.cli import explicit_values

    assert explicit_values(TrainConfig, args) == {"lr": 0.5}
