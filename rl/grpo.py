"""GRPO of the SFT policy against the composite reward, on TRL's GRPOTrainer, through the online RL stage
(rl/online.py): group-normalised advantages, the clipped ratio loss aggregated as `loss_type` says (TRL's dapo,
grpo, dr_grpo, bnpo; `epsilon_high`, `mask_truncated_completions` pass through under TRL's names).

    python rl/grpo.py --config configs/tiny.yaml
"""

from __future__ import annotations

from common.accelerators import import_unsloth_if_requested

if __name__ == "__main__":
    import_unsloth_if_requested()   # unsloth must be imported before trl, which it patches

from trl import GRPOConfig, GRPOTrainer

from common.cli import cli
from rl.online import OnlineAlgorithm, train_online

GRPO = OnlineAlgorithm("grpo", GRPOTrainer, GRPOConfig,
                       settings=lambda cfg: {"loss_type": cfg.loss_type, "epsilon": cfg.epsilon})


def main(argv: list[str] | None = None) -> dict:
    return train_online(GRPO, argv)


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
