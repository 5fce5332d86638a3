"""CLIP methods. Importing the package registers every trainer and its config keys.

Trainer (TRAINER.NAME)  config node          registered model (checkpoint folder)
TaskRes                 TRAINER.TaskRes       prompt_learner
CoOp                    TRAINER.COOP          prompt_learner
CLIP_Adapter            TRAINER.CLIP_ADAPTER  clip_adapter
ZeroshotCLIP(2)         TRAINER.ZSCLIP        none (evaluation only)
LinearProbeCLIP         TRAINER.LINEAR_PROBE  linear_probe
All share TRAINER.PROTOCOL (protocol.py), TRAINER.FEATURE_STORE (feature_store.py),
TRAINER.FEATURE_CACHE and TRAINER.DECODE_ONCE_MB (clip_base.py).
"""

from . import clip_adapter, coop, linear_probe, taskres, zsclip

__all__ = ["clip_adapter", "coop", "linear_probe", "taskres", "zsclip"]
