"""The one list of the pipeline's stages and tools: name, entry point, config class, what it leaves behind.

Presets (common/config.py) read their sections from it (a section may lay its keys over a parent's), evaluation
takes its default policies and report rows from it, and sweeps find the RL stage they run in it. A stage's entry
point is `main(argv)` in `module`; its outputs go to <runs_dir>/<run_name>/<name>/.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.stage_configs import (
    AnnotateArgs,
    DPOArgs,
    EvalArgs,
    GenerateArgs,
    GRPOArgs,
    PGCLArgs,
    PPOArgs,
    RMArgs,
    ScoreArgs,
    SFTArgs,
)


@dataclass(frozen=True)
class Stage:
    name: str        # its directory under the run, and its name as a policy ('sft', 'grpo', ...)
    module: str      # the entry point: python -m <module>, or <module>.main(argv)
    config: type     # its dataclass
    section: str     # its section in a YAML preset (dpo and dpop share 'dpo')
    output: str      # 'adapter' (a policy), 'reward_model', 'data' or 'report'
    kind: str        # 'data', 'sft', 'reward_model', 'online_rl' (samples and scores while it trains), 'preference', 'eval'


STAGES = (
    Stage("annotate", "sft.annotate", AnnotateArgs, "annotate", "data", "data"),
    Stage("sft", "sft.sft", SFTArgs, "sft", "adapter", "sft"),
    Stage("rm", "reward.train_rm", RMArgs, "rm", "reward_model", "reward_model"),
    Stage("rm_pairwise", "reward.train_rm", RMArgs, "rm_pairwise", "reward_model", "reward_model"),   # rm, then its own
    Stage("rm_rating", "reward.train_rm", RMArgs, "rm_rating", "reward_model", "reward_model"),
    Stage("grpo", "rl.grpo", GRPOArgs, "grpo", "adapter", "online_rl"),
    Stage("rloo", "rl.rloo", GRPOArgs, "grpo", "adapter", "online_rl"),      # reads GRPO's section
    Stage("ppo", "rl.ppo", PPOArgs, "ppo", "adapter", "online_rl"),
    Stage("dpo", "rl.dpo", DPOArgs, "dpo", "adapter", "preference"),
    Stage("dpop", "rl.dpo", DPOArgs, "dpo", "adapter", "preference"),
    Stage("pgcl", "rl.pgcl", PGCLArgs, "pgcl", "adapter", "preference"),
    Stage("eval", "eval.evaluate", EvalArgs, "eval", "report", "eval"),
)
# tools that read a preset section of their own but leave no stage directory behind
TOOL_SECTIONS = {"score": ScoreArgs, "generate": GenerateArgs}

# preset section -> config class (a section's keys must be fields of its class)
SECTIONS = {**{s.section: s.config for s in STAGES}, **TOOL_SECTIONS}
# a section read after its parent's, overriding it: the ranking reward models share the classifier's settings
# (backbone, batch size, ...) and may set their own budget (a preset's rm_pairwise: {max_steps: 600})
SECTION_PARENTS = {"rm_pairwise": "rm", "rm_rating": "rm"}
POLICY_STAGES = tuple(s.name for s in STAGES if s.output == "adapter")
RL_STAGES = tuple(s.name for s in STAGES if s.kind == "online_rl")


def stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown stage {name!r}; valid: {[s.name for s in STAGES]}")
