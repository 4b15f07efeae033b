#!/usr/bin/env bash
# Shared launcher for the paper's verl runs (docs/paper.md §3): GRPO and its entropy-control baselines
# and ERA, all from one entry point (`python -m era_llm.integrations.verl`, an unmodified verl >= 0.9).
#
# Needs a GPU node with `uv sync --package era-llm --extra verl --extra vllm` (plus verl's
# `verl-core` extra for its V1 trainer: TransferQueue and tensordict >= 0.10), a local model
# checkpoint and parquet data files in verl's format (prompt + reward_model.ground_truth).
#
# METHOD selects the run (the policy loss and its keys):
#   grpo         verl's vanilla clipped surrogate (clip 0.2)
#   clip-higher  vanilla with clip_ratio_high 0.28 (DAPO)
#   kl-cov       verl's kl_cov
#   clip-cov     verl's clip_cov
#   forking      20 % highest-entropy tokens (era_llm's `forking` loss)
#   gspo         verl's gspo (sequence ratio, clip 3e-4 / 4e-4)
#   era          ERA (band ERA_LOW..ERA_HIGH, factor ERA_K) on GRPO
#   gspo-era     ERA on GSPO
# Extra Hydra overrides can be appended as arguments.
set -euo pipefail

: "${MODEL:?set MODEL to a local checkpoint directory}"
: "${TRAIN_FILES:?set TRAIN_FILES to the training parquet}"
: "${VAL_FILES:?set VAL_FILES to the validation parquet}"
METHOD=${METHOD:-era}
# ERA_LOW, ERA_HIGH, ERA_K, ERA_ADV_SCALE: passed only when set; otherwise the paper's values,
# ERAPolicyLossConfig's defaults (those of era_llm.era.ERAConfig), apply. ERA_LOGIT_TOPK=20 turns
# on the top-k stage (old and new log-probs over the 20 largest logits; unset: the full softmax),
# ERA_TOPK_LABEL=constant|renormalise what a label outside the top k gets (default constant).
N_GPUS=${N_GPUS:-8}
NNODES=${NNODES:-1}
TRAIN_BATCH=${TRAIN_BATCH:-256}       # prompts per step; on-policy: mini batch = train batch
ROLLOUT_N=${ROLLOUT_N:-8}
MAX_PROMPT=${MAX_PROMPT:-1024}
MAX_RESPONSE=${MAX_RESPONSE:-8192}
LR=${LR:-1e-6}
TP=${TP:-2}
EPOCHS=${EPOCHS:-30}
PROJECT=${PROJECT:-era-llm}
RUN_NAME=${RUN_NAME:-${METHOD}}

case "$METHOD" in
  grpo) loss=(actor_rollout_ref.actor.policy_loss.loss_mode=vanilla) ;;
  clip-higher) loss=(actor_rollout_ref.actor.policy_loss.loss_mode=vanilla
                     actor_rollout_ref.actor.clip_ratio_high=0.28) ;;
  kl-cov) loss=(actor_rollout_ref.actor.policy_loss.loss_mode=kl_cov
                actor_rollout_ref.actor.policy_loss.kl_cov_ratio=0.002
                actor_rollout_ref.actor.policy_loss.ppo_kl_coef=1.0) ;;
  clip-cov) loss=(actor_rollout_ref.actor.policy_loss.loss_mode=clip_cov
                  actor_rollout_ref.actor.policy_loss.clip_cov_ratio=0.0002
                  actor_rollout_ref.actor.policy_loss.clip_cov_lb=1.0
                  actor_rollout_ref.actor.policy_loss.clip_cov_ub=5.0) ;;
  forking) loss=(actor_rollout_ref.actor.policy_loss.loss_mode=forking
                 +actor_rollout_ref.actor.policy_loss.forking_fraction=0.2) ;;
  gspo) loss=(actor_rollout_ref.actor.policy_loss.loss_mode=gspo
              actor_rollout_ref.actor.clip_ratio_low=3e-4
              actor_rollout_ref.actor.clip_ratio_high=4e-4
              actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean) ;;
  era|gspo-era)
    mode=era; [[ "$METHOD" == gspo-era ]] && mode=era_gspo
    loss=(actor_rollout_ref.actor.policy_loss.loss_mode=$mode)
    for key in low high k adv_scale logit_topk topk_label; do
      var=ERA_${key^^}
      if [[ -n "${!var:-}" ]]; then
        loss+=("+actor_rollout_ref.actor.policy_loss.era_${key}=${!var}")
      fi
    done
    if [[ "$METHOD" == gspo-era ]]; then
      loss+=(actor_rollout_ref.actor.clip_ratio_low=3e-4 actor_rollout_ref.actor.clip_ratio_high=4e-4
             actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean)
    fi ;;
  *) echo "unknown METHOD=$METHOD (grpo clip-higher kl-cov clip-cov forking gspo era gspo-era)" >&2; exit 2 ;;
esac

exec python -m era_llm.integrations.verl \
  algorithm.adv_estimator=grpo \
  algorithm.use_kl_in_reward=false \
  algorithm.filter_groups.enable=true \
  algorithm.filter_groups.metric=acc \
  data.train_files="$TRAIN_FILES" \
  data.val_files="$VAL_FILES" \
  data.train_batch_size="$TRAIN_BATCH" \
  data.max_prompt_length="$MAX_PROMPT" \
  data.max_response_length="$MAX_RESPONSE" \
  actor_rollout_ref.model.path="$MODEL" \
  actor_rollout_ref.actor.optim.lr="$LR" \
  actor_rollout_ref.actor.ppo_mini_batch_size="$TRAIN_BATCH" \
  actor_rollout_ref.actor.ppo_epochs=1 \
  actor_rollout_ref.actor.use_kl_loss=false \
  actor_rollout_ref.actor.entropy_coeff=0 \
  actor_rollout_ref.actor.use_dynamic_bsz=true \
  actor_rollout_ref.actor.use_fused_kernels=false \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.n="$ROLLOUT_N" \
  actor_rollout_ref.rollout.temperature=1.0 \
  actor_rollout_ref.rollout.tensor_model_parallel_size="$TP" \
  actor_rollout_ref.rollout.calculate_log_probs=false \
  trainer.n_gpus_per_node="$N_GPUS" \
  trainer.nnodes="$NNODES" \
  trainer.total_epochs="$EPOCHS" \
  trainer.project_name="$PROJECT" \
  trainer.experiment_name="$RUN_NAME" \
  trainer.logger='[console,tensorboard]' \
  "${loss[@]}" "$@"
