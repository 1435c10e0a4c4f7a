"""RLOO of the SFT policy against the composite reward, on TRL's RLOOTrainer, through the online RL stage
(rl/online.py): each completion's advantage is its reward minus the mean reward of the other completions of its
prompt (REINFORCE leave-one-out, arXiv 2402.14740), with the clipped ratio loss. It shares GRPO's preset section.

    python rl/rloo.py --config configs/tiny.yaml
"""

from __future__ import annotations

from common.accelerators import import_unsloth_if_requested

if __name__ == "__main__":
    import_unsloth_if_requested()   # unsloth must be imported before trl, which it patches

from trl import RLOOConfig, RLOOTrainer

from common.cli import cli
from rl.online import OnlineAlgorithm, train_online

RLOO = OnlineAlgorithm("rloo", RLOOTrainer, RLOOConfig, settings=lambda cfg: {"epsilon": cfg.epsilon})


def main(argv: list[str] | None = None) -> dict:
    return train_online(RLOO, argv)


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
