#!/usr/bin/env bash
# Paper Table 2 / Table 3 (GSPO): Qwen2.5-Math-7B trained on DAPO-Math-17K, 8k responses.
# METHOD=grpo|clip-higher|kl-cov|clip-cov|forking|gspo|era|gspo-era (default era).
# The paper's second stage continues from the first-stage checkpoint with a lower bound:
#   MODEL=<stage-1 ckpt> ERA_LOW=0.2 bash qwen2.5-math-7b_dapo17k.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export MODEL=${MODEL:-$HOME/models/Qwen2.5-Math-7B}
export TRAIN_FILES=${TRAIN_FILES:-$HOME/data/dapo-math-17k/train.parquet}
export VAL_FILES=${VAL_FILES:-$HOME/data/aime24/test.parquet}
export MAX_RESPONSE=${MAX_RESPONSE:-8192}
export TRAIN_BATCH=${TRAIN_BATCH:-256}
export N_GPUS=${N_GPUS:-8}
# the authors' 7B runs always use the top-k stage (log-probs over the 20 largest logits)
export ERA_LOGIT_TOPK=${ERA_LOGIT_TOPK:-20}
exec bash "$here/verl_common.sh" "$@"
