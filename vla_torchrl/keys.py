"""Every tensordict key the toolkit reads or writes, and nothing else.

Keys follow :mod:`torchrl.data.vla`'s schema where it has one (image, instruction, action,
action tokens) and TorchRL's loss conventions elsewhere (``state_value``, ``advantage``,
``value_target``, ``("next", "reward")``...). Components take their keys as arguments (losses
through ``set_keys``); these constants are the shared defaults, so that envs, modules,
objectives and recipes agree without string literals scattered around.

Shapes, with ``B`` the batch (env) dims:

============================  ==================  ============================================
key                           dtype, shape        meaning
============================  ==================  ============================================
IMAGE_KEY                     uint8 [B, H, W, 3]  third-person RGB frame
FOREGROUND_MASK_KEY           bool [B, H, W]      object / receptacle / robot pixels
STATE_KEY                     float [B, S]        proprioception (optional)
INSTRUCTION_KEY               str (non-tensor)    language instruction, one per env
INSTRUCTION_BYTES_KEY         uint8 [B, L]        the same as UTF-8 bytes (InstructionBytes)
EPISODE_ID_KEY                int64 [B]           episode id that seeded the reset
PRIVILEGED_KEY                TensorDict [B]      simulator state labels (demos only)
ACTION_KEY                    float [B, 7]        continuous env action (xyz, euler, gripper)
ACTION_TOKENS_KEY             int64 [B, 7]        OpenVLA action token ids (31744..31999)
TOKEN_LOG_PROBS_KEY           float [B, 7]        log-prob of each action token
ACTION_LOG_PROB_KEY           float [B]           sum of the 7 token log-probs (Eq. 1)
HIDDEN_KEY                    float [B, D]        critic input (h^0 by default), detached
VALUE_KEY                     float [B, 1]        V(s)
ADVANTAGE_KEY, VALUE_TARGET   float [B, 1]        GAE / group-relative outputs
REWARD_KEY, DONE_KEY, ...     [B, 1]              under ``"next"`` as in TorchRL
GRASPED_KEY, ...              bool [B, 1]         episode metrics so far, under ``"next"``
============================  ==================  ============================================
"""

from __future__ import annotations

from tensordict.utils import NestedKey
from torchrl.data.vla import (
    ACTION_KEY,
    ACTION_TOKENS_KEY,
    IMAGE_KEY,
    INSTRUCTION_KEY,
    OBSERVATION_KEY,
    STATE_KEY,
    VLA_ACTION_KEY,
)

__all__ = [
    "ACTION_KEY",
    "ACTION_LOG_PROB_KEY",
    "ACTION_TOKENS_KEY",
    "ADVANTAGE_KEY",
    "CONTINUOUS_GRASP_KEY",
    "DONE_KEY",
    "EPISODE_ID_KEY",
    "EPISODE_ID_REQUEST_KEY",
    "EVAL_ENTROPY_KEY",
    "EVAL_TOKEN_LOG_PROBS_KEY",
    "FOREGROUND_MASK_KEY",
    "GRASPED_KEY",
    "HIDDEN_KEY",
    "IMAGE_KEY",
    "INSTRUCTION_BYTES_KEY",
    "INSTRUCTION_KEY",
    "METRIC_KEYS",
    "NEXT",
    "OBSERVATION_KEY",
    "PRIVILEGED_KEY",
    "REF_ACTION_LOG_PROB_KEY",
    "REWARD_KEY",
    "STATE_KEY",
    "SIM_ERROR_KEY",
    "SUCCESS_KEY",
    "TERMINATED_KEY",
    "TOKEN_LOG_PROBS_KEY",
    "TRUNCATED_KEY",
    "VALUE_KEY",
    "VALID_STEP_KEY",
    "VALUE_TARGET_KEY",
    "VLA_ACTION_KEY",
    "next_key",
]

NEXT = "next"

# -- observations (written by envs, read by transforms and the actor) -------------------------
FOREGROUND_MASK_KEY: NestedKey = (OBSERVATION_KEY, "foreground_mask")
EPISODE_ID_KEY: NestedKey = "episode_id"
# the instruction as zero-padded UTF-8 bytes (envs.transforms.InstructionBytes), for TorchRL
# pieces that take tensor inputs only (e.g. its GAE); the modules read it as the instruction
INSTRUCTION_BYTES_KEY: NestedKey = (OBSERVATION_KEY, "instruction_bytes")
# privileged simulator state (expert demos, ``vla-torchrl-collect privileged=true``): a
# sub-tensordict of robot-root-frame positions, the grasp flag and the expert's phase; never
# an input of the policy, only a label (vision pretraining, diagnostics)
PRIVILEGED_KEY: NestedKey = "privileged"
# reset input: the episode id to draw (-1: the env's next one); see vla_torchrl.envs.maniskill.put_on_env
EPISODE_ID_REQUEST_KEY: NestedKey = "episode_id_request"

# -- policy outputs ---------------------------------------------------------------------------
TOKEN_LOG_PROBS_KEY: NestedKey = (VLA_ACTION_KEY, "token_log_probs")
ACTION_LOG_PROB_KEY: NestedKey = "action_log_prob"
HIDDEN_KEY: NestedKey = (VLA_ACTION_KEY, "hidden")
VALUE_KEY: NestedKey = "state_value"

# -- evaluation pass (teacher-forced, used by losses; kept apart from the rollout's values) ----
EVAL_TOKEN_LOG_PROBS_KEY: NestedKey = ("eval", "token_log_probs")
EVAL_ENTROPY_KEY: NestedKey = ("eval", "entropy")
REF_ACTION_LOG_PROB_KEY: NestedKey = "ref_action_log_prob"

# -- advantage estimation ---------------------------------------------------------------------
ADVANTAGE_KEY: NestedKey = "advantage"
VALUE_TARGET_KEY: NestedKey = "value_target"

# -- transitions (stored under "next" by TorchRL envs) ----------------------------------------
REWARD_KEY: NestedKey = "reward"
DONE_KEY: NestedKey = "done"
TERMINATED_KEY: NestedKey = "terminated"
TRUNCATED_KEY: NestedKey = "truncated"
# bool [B, 1]: the simulator raised during this step; the env was reset and the step (with the
# rest of its episode) is void (vla_torchrl.envs.sim_errors)
SIM_ERROR_KEY: NestedKey = "sim_error"
# bool [B, T] (recipes): False on the steps of episodes void by a simulator error
VALID_STEP_KEY: NestedKey = "valid_step"

# -- episode metrics (paper Sec. 5: grasp accuracy, continuous grasp accuracy, success) -------
GRASPED_KEY: NestedKey = "grasped"
CONTINUOUS_GRASP_KEY: NestedKey = "continuous_grasp"
SUCCESS_KEY: NestedKey = "success"
METRIC_KEYS: tuple[NestedKey, ...] = (GRASPED_KEY, CONTINUOUS_GRASP_KEY, SUCCESS_KEY)


def next_key(key: NestedKey) -> tuple[str, ...]:
    """The key of ``key`` in the ``"next"`` sub-tensordict.

    Examples:
        >>> next_key("reward")
        ('next', 'reward')
        >>> next_key(("observation", "image"))
        ('next', 'observation', 'image')
    """
    return (NEXT, key) if isinstance(key, str) else (NEXT, *key)
