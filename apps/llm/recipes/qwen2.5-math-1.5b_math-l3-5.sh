#!/usr/bin/env bash
# Paper Table 3: Qwen2.5-Math-1.5B trained on MATH levels 3-5 (GRPO 29.8 -> ERA 34.0 average).
# METHOD=grpo|era (or any baseline of verl_common.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export MODEL=${MODEL:-$HOME/models/Qwen2.5-Math-1.5B}
export TRAIN_FILES=${TRAIN_FILES:-$HOME/data/math-l3-5/train.parquet}
export VAL_FILES=${VAL_FILES:-$HOME/data/math500/test.parquet}
export MAX_RESPONSE=${MAX_RESPONSE:-3072}
export TRAIN_BATCH=${TRAIN_BATCH:-128}
export TP=${TP:-1}
export N_GPUS=${N_GPUS:-8}
exec bash "$here/verl_common.sh" "$@"
