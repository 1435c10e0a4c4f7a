"""The configuration of every stage, as dataclasses that document themselves.

Shared groups (run/data, policy, reward) are small base classes; each stage's `*Args` combines the groups it
uses and adds its own optimisation settings. YAML presets in `configs/` set these fields by name.

Each field keeps what a reader needs beside it: type, default, `metadata["help"]` (the --help text) and, for a
numeric field, `metadata["range"]` (a `Range`), which `check_ranges` enforces before a stage loads anything and
--help shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from transformers import TrainingArguments
from trl import DPOConfig, GRPOConfig, SFTConfig


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: low <= v <= high (None: unbounded), an open end excluding its bound."""
    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


# Ranges many fields share (a field's own range is its metadata's "range")
_AT_LEAST_1 = Range(1)
_NON_NEGATIVE = Range(0)
_POSITIVE = Range(0, low_open=True)
_SHARE = Range(0, 1)

def model_dirs(spec: str) -> list[Path]:
    """The directories of a comma-separated list of trained models ('a' or 'a,b,c').

    >>> [str(p) for p in model_dirs("runs/x/rm_pairwise/final, runs/jokes/rm_pairwise/final")]
    ['runs/x/rm_pairwise/final', 'runs/jokes/rm_pairwise/final']
    """
    return [Path(part.strip()) for part in spec.split(",") if part.strip()]


SEED_REWARD_WEIGHTS = {
    # the seed authors' formula. A *_penalty gets a negative weight.
    "headline": {"rm_reward": 0.75, "length_reward": 0.20, "repetition_penalty": -0.15},
    "words": {"rm_reward": 0.55, "coverage_reward": 0.25, "length_reward": 0.15, "repetition_penalty": -0.10},
}
# The guards against the reward hacks the seed authors hit, small enough not to dominate the humor signal but
# large enough that Arabic script, a missing EOS or code garbage never outscores a clean joke.
GUARD_WEIGHTS = {"script_drift_penalty": -0.30, "no_eos_penalty": -0.10, "gibberish_penalty": -0.20,
                 "empty_penalty": -1.00,        # an empty or punctuation-only completion never earns a positive total
                 "degenerate_penalty": -1.00}   # nor does one phrase looped or a text of junk ("a" * 10000)
HUMOR_COMPONENTS = ("rm_reward", "rank_reward", "ensemble_reward")     # the components a trained model scores
REWARD_WEIGHT_PRESETS = {
    "seed": SEED_REWARD_WEIGHTS,
    "default": {prompt_type: {**weights, **GUARD_WEIGHTS} for prompt_type, weights in SEED_REWARD_WEIGHTS.items()},
    # the humor term from people's side-by-side choices (the ranking RM, rank_reward) instead of the binary
    # classifier's P(humor), the rest as in default
    "preference": {prompt_type: {("rank_reward" if name == "rm_reward" else name): w
                                 for name, w in {**weights, **GUARD_WEIGHTS}.items()}
                   for prompt_type, weights in SEED_REWARD_WEIGHTS.items()},
}


@dataclass
class RunArgs:
    """Which run: every stage and tool finds its inputs and writes its outputs under <runs_dir>/<run_name>/."""

    run_name: str = field(default="default", metadata={"help": "Name of the run: outputs go to <runs_dir>/<run_name>/<stage>/."})
    runs_dir: str = field(default="runs", metadata={"help": "Parent directory of all runs."})
    seed: int = field(default=42, metadata={
        "help": "Seed for data splits, initialisation and sampling.", "range": _NON_NEGATIVE})

    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.run_name

    def previous_stage_dir(self, stage: str) -> Path:
        return self.run_dir() / stage


@dataclass
class StageArgs:
    """A stage that writes its own directory and can be dry-run."""

    output_dir: str | None = field(default=None, metadata={"help": "This stage's output directory. None: <runs_dir>/<run_name>/<stage>."})
    dry_run: bool = field(default=False, metadata={
        "help": "Resolve the config, the data and the reward components, print the plan and stop before loading "
                "any weights (checks a GPU preset on a machine without the models)."})
    resume_changed: bool = field(default=False, metadata={
        "help": "Resume an interrupted stage even though settings that change the training differ from the ones it "
                "started with (they are listed, and recorded in summary.json under resumes)."})

    def stage_dir(self, stage: str) -> Path:
        return Path(self.output_dir) if self.output_dir else Path(self.runs_dir) / self.run_name / stage


@dataclass
class DataArgs:
    """Where the real data sets are and which languages to keep."""

    data_dir: str | None = field(default=None, metadata={"help": "Directory holding the real data sets (../shared/data layout). "
                                 "Needed by every source except 'sample' and 'demo', which ship with the project."})
    langs: list[str] = field(default_factory=lambda: ["en"], metadata={"help": "Languages to keep from the sources (en, zh, es)."})
    max_rows_per_source: int | None = field(default=None, metadata={
        "help": "Keep at most this many rows of each source (seeded sample). None: all.", "range": _AT_LEAST_1})


@dataclass
class LabeledDataArgs:
    """Labeled humor texts (reward-model data; their jokes are SFT targets)."""

    labeled_sources: list[str | dict] = field(default_factory=lambda: ["sample"], metadata={
        "help": "Labeled humor sets (RM data; their jokes are SFT targets): sample, demo (shipped), colbert, "
                "ccl2019, haha2021 (--data_dir), or your own: a file (.jsonl, .json array, .csv, .tsv, .parquet; "
                "columns text, label, optional lang and id), a datasets folder or hub name, or "
                "{path: F, columns: {text: your_column, label: ...}, lang: en}."})


@dataclass
class PromptArgs:
    """Task prompts: RL trains on one share, every stage samples the same held-out share."""

    prompt_sources: list[str | dict] = field(default_factory=lambda: ["sample"], metadata={
        "help": "Task prompt sets (RL prompts, held-out evaluation prompts): sample, demo (shipped), mwahaha_test, "
                "mwahaha_dev (--data_dir), or your own file / dataset: a headline, or two words (words as a list or "
                "'a, b', or word1 + word2), optional id and lang; {path: F, columns: {...}} maps column names."})
    eval_prompts: int = field(default=8, metadata={
        "help": "Prompts held out of training for evaluation samples (stop rate, examples).", "range": _NON_NEGATIVE})


@dataclass
class PolicyArgs:
    """The causal LM policy."""

    policy_model: str = field(default="tiny:llama", metadata={
        "help": "Base causal LM: a local directory, a hub id, or 'tiny:llama' (random, built in seconds, for tests)."})
    model_dtype: str = field(default="fp32", metadata={
        "help": "Weights of the policy when loaded: fp32 (CPU; bf16 autocast gives the speed), bf16 or fp16 (GPU "
                "presets: half the memory)."})


@dataclass
class LoRAArgs:
    """The LoRA adapter a training stage adds to the policy."""

    lora_r: int = field(default=16, metadata={"help": "LoRA rank.", "range": _AT_LEAST_1})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r).", "range": _POSITIVE})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout.", "range": Range(0, 1, high_open=True)})
    lora_target_modules: str | list[str] = field(default="all-linear", metadata={"help": "Modules that get LoRA adapters (PEFT syntax)."})


@dataclass
class SamplingArgs:
    """How the policy samples completions."""

    max_new_tokens: int = field(default=128, metadata={
        "help": "Longest completion sampled; a completion that reaches it did not stop (no EOS).",
        "range": _AT_LEAST_1})
    temperature: float = field(default=0.9, metadata={
        "help": "Sampling temperature (seeds: 0.8-0.95).", "range": _POSITIVE})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass.", "range": Range(0, 1, low_open=True)})
    max_prompt_tokens: int = field(default=128, metadata={
        "help": "Prompts are truncated on the left to this many tokens.", "range": _AT_LEAST_1})
    bf16: bool | None = field(default=None, metadata={
        "help": "bf16 autocast for training and sampling (weights stay fp32). None: on for a GPU and for a CPU with "
                "AVX512-BF16 (1.5-2x faster there, see bench/), off otherwise."})


@dataclass
class UnslothArgs:
    """Stages that can load and train the policy through unsloth (SFT, GRPO)."""

    use_unsloth: bool = field(default=False, metadata={
        "help": "Load and train the policy through unsloth (GPU only; imported before trl; requirements-gpu.txt)."})


@dataclass
class RewardModelArgs:
    """The trained reward model and the component that plays 'the reward model' in alarms, win rates and sweeps."""

    reward_model: str | None = field(default=None, metadata={
        "help": "Trained humor classifier directory. None: <runs_dir>/<run_name>/rm/final."})
    rm_component: str | None = field(default=None, metadata={
        "help": "The reward component that judges humor: the repetition alarm watches it, evaluation reports its mean "
                "and wins battles with it, sweeps put it on the Pareto front, PGCL ranks y* by it. None: the model "
                "component the reward weights use (rm_reward, else rank_reward, else ensemble_reward; rm_reward "
                "without weights)."})
    rm_batch_size: int = field(default=32, metadata={
        "help": "Texts per reward-model forward pass.", "range": _AT_LEAST_1})
    rm_max_length: int = field(default=256, metadata={
        "help": "Reward-model input truncation, in its own tokens.", "range": _AT_LEAST_1})

    ranking_model: str | None = field(default=None, metadata={
        "help": "Trained ranking reward model (train_rm.py --rm_objective pairwise|rating) behind the component "
                "rank_reward; several, comma-separated: the mean of their scores (a Humicroedit RM and one that "
                "also learnt from jokes). None: <runs_dir>/<run_name>/rm_pairwise/final."})

    rm_ensemble: list[str] = field(default_factory=list, metadata={
        "help": "Trained humor classifiers (2 or more: other seeds or backbones) behind the components "
                "ensemble_reward (mean - ensemble_k * std of their P(humor)) and ensemble_std (their disagreement)."})
    ensemble_k: float = field(default=1.0, metadata={
        "help": "Weight of the members' std in ensemble_reward: 0 = their mean; larger = more caution where they "
                "disagree.",
        "range": _NON_NEGATIVE})

    def reward_model_dir(self) -> Path:
        return Path(self.reward_model) if self.reward_model else Path(self.runs_dir) / self.run_name / "rm" / "final"

    def ranking_model_dirs(self) -> list[Path]:
        if not self.ranking_model:
            return [Path(self.runs_dir) / self.run_name / "rm_pairwise" / "final"]
        return model_dirs(self.ranking_model)


@dataclass
class TextCheckArgs:
    """When a text counts as repetitive, drifted or gibberish: one rule for the RL monitor, evaluation, submission
    checks and the PGCL structure check."""

    repetition_ngram: int = field(default=3, metadata={
        "help": "n of the n-grams counted by repetition_penalty (words; characters for zh).", "range": _AT_LEAST_1})
    repetition_threshold: float = field(default=0.20, metadata={
        "help": "A text is repetitive when repetition_penalty exceeds this (repetition rate, PGCL's pun check).",
        "range": _SHARE})
    drift_threshold: float = field(default=0.05, metadata={
        "help": "A text has drifted out of its language's script when script_drift_penalty exceeds this (drift rate, "
                "submission check).", "range": _SHARE})
    gibberish_threshold: float = field(default=0.10, metadata={
        "help": "A text is gibberish when gibberish_penalty exceeds this (gibberish rate).", "range": _SHARE})


@dataclass
class RewardArgs(TextCheckArgs, RewardModelArgs):
    """The composite reward: components, their parameters and per-prompt-type weights."""

    reward_weights: str | dict = field(default="default", metadata={
        "help": "Per prompt type, component name -> weight; total = sum of weight * component. Or a preset name: "
                "'seed' (the seed authors' formula exactly) or 'default' (seed + small guard penalties "
                "for script drift, missing EOS and gibberish)."})
    length_window: dict = field(default_factory=lambda: {"en": [6, 40], "es": [6, 40], "zh": [10, 80]}, metadata={
        "help": "Per language, [lo, hi] length that scores 1.0 (words for en/es, characters for zh)."})
    reward_module: str | None = field(default=None, metadata={
        "help": "A Python file of your own reward components: every public function f(completions, **kwargs) in it "
                "(TRL's reward signature; kwargs are the columns prompt_type, words, lang, instruction, finished) "
                "becomes a component under its name, to weight in reward_weights like the built-in ones."})

    def __post_init__(self):
        if isinstance(self.reward_weights, str):
            if self.reward_weights not in REWARD_WEIGHT_PRESETS:
                raise ValueError(f"reward_weights: unknown preset '{self.reward_weights}'; valid: "
                                 f"{sorted(REWARD_WEIGHT_PRESETS)} or a mapping prompt type -> component -> weight")
            self.reward_weights = {k: dict(v) for k, v in REWARD_WEIGHT_PRESETS[self.reward_weights].items()}
        for prompt_type, weights in self.reward_weights.items():
            if prompt_type not in ("headline", "words"):
                raise ValueError(f"reward_weights: unknown prompt type '{prompt_type}' (headline, words)")
            if not isinstance(weights, dict) or not weights:
                raise ValueError(f"reward_weights.{prompt_type}: must map component names to weights, got {weights!r}")
            for name, w in weights.items():
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                    raise ValueError(f"reward_weights.{prompt_type}.{name}: must be a finite number, got {w!r}")
                # a *_penalty is higher when worse, a *_reward higher when better: a weight of the other sign
                # would pay the policy for the very fault the component measures
                if (name.endswith("_penalty") and w > 0) or (name.endswith("_reward") and w < 0):
                    raise ValueError(f"reward_weights.{prompt_type}.{name}: {w} has the wrong sign; a *_penalty "
                                     f"takes a weight <= 0 and a *_reward a weight >= 0")
        if self.rm_component is None:       # the humor term the weights train on
            weighted = {name for weights in self.reward_weights.values() for name, w in weights.items() if w}
            self.rm_component = next((name for name in HUMOR_COMPONENTS if name in weighted), "rm_reward")


@dataclass
class TrainArgs:
    """Optimisation settings every training stage uses."""

    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate.", "range": _NON_NEGATIVE})
    max_steps: int = field(default=20, metadata={
        "help": "Optimizer steps (ignored when epochs is set).", "range": _AT_LEAST_1})
    batch_size: int = field(default=8, metadata={
        "help": "Examples per optimizer step (per device).", "range": _AT_LEAST_1})
    save_steps: int = field(default=50, metadata={
        "help": "Write a checkpoint every N steps (the run resumes from the last one).", "range": _AT_LEAST_1})


@dataclass
class TrainerArgs(TrainArgs):
    """Settings of the stages that run on a transformers / TRL Trainer. Any other field of that trainer's config
    (trainer_config) can be set under its own name; our short names for some of them are trainer_aliases."""

    trainer_config: ClassVar[type] = TrainingArguments
    trainer_aliases: ClassVar[dict[str, str]] = {"per_device_train_batch_size": "batch_size", "num_train_epochs": "epochs"}

    epochs: float | None = field(default=None, metadata={
        "help": "Passes over the training data instead of max_steps (seed SFT: 3).", "range": _POSITIVE})
    logging_steps: int = field(default=1, metadata={"help": "Log to TensorBoard every N steps.", "range": _AT_LEAST_1})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps.", "range": _NON_NEGATIVE})
    trainer_args: dict = field(default_factory=dict, metadata={
        "help": "Fields of the stage's TRL / transformers config under their own names (gradient_accumulation_steps, "
                "lr_scheduler_type, report_to, scale_rewards, ...): set them as flags or preset keys directly; they "
                "are collected here and win over our defaults. report_to adds trackers beside our TensorBoard."})


@dataclass
class PolicyStageArgs(SamplingArgs, LoRAArgs, PolicyArgs, DataArgs, StageArgs, RunArgs):
    """What every stage that trains a LoRA on the policy shares."""


@dataclass
class SFTArgs(TrainerArgs, UnslothArgs, LabeledDataArgs, PromptArgs, PolicyStageArgs):
    """Supervised fine-tuning of the LoRA policy on prompt -> joke, with an explicit EOS on every target."""

    trainer_config: ClassVar[type] = SFTConfig

    sft_sources: list[str] = field(default_factory=list, metadata={
        "help": "Annotated jokes (sft/annotate.py's annotations.jsonl, or its folder; 'annotate': this run's) as "
                "demonstrations of both prompt types: headline -> joke and two words -> joke."})

    max_length: int = field(default=256, metadata={
        "help": "Prompt + joke tokens; longer examples are truncated.", "range": _AT_LEAST_1})


@dataclass
class RMArgs(TrainerArgs, LabeledDataArgs, DataArgs, StageArgs, RunArgs):
    """Binary humor classifier (text -> P(humor)) trained with transformers' Trainer."""

    rm_backbone: str = field(default="tiny:bert", metadata={
        "help": "Encoder to fine-tune as a 2-label classifier: a local directory, a hub id "
                "(microsoft/deberta-v3-base, ...) or 'tiny:bert' (random, for tests)."})
    with_prompt: bool = field(default=False, metadata={"help": "Train on prompt + text instead of text alone (the seeds did both)."})
    annotations: list[str] = field(default_factory=list, metadata={
        "help": "With with_prompt: annotated jokes (annotations.jsonl or its folder; 'annotate': this run's) whose "
                "headline prompt pairs with the joke, instead of a two-words prompt built from the joke."})
    test_size: float = field(default=0.1, metadata={
        "help": "Stratified held-out share for accuracy/precision/recall/F1/ROC-AUC.",
        "range": Range(0, 1, low_open=True, high_open=True)})
    max_length: int = field(default=128, metadata={
        "help": "Classifier input truncation in tokens.", "range": _AT_LEAST_1})
    eval_batch_size: int = field(default=64, metadata={
        "help": "Batch size for held-out evaluation.", "range": _AT_LEAST_1})
    rm_objective: str = field(default="classify", metadata={
        "help": "classify: humor / not humor on the labeled sources (P(humor), stage dir rm/); pairwise: "
                "Bradley-Terry on which of two texts is funnier (TRL RewardTrainer; human pairs plus pairs of graded "
                "texts whose grades differ by pair_min_grade_gap; dir rm_pairwise/); rating: regression on the "
                "grades normalised to [0, 1] (dir rm_rating/). Both train on graded_sources and report pairwise "
                "accuracy, Spearman and RMSE per source on held-out rows."})
    graded_sources: list[str] = field(default_factory=lambda: ["humicroedit"], metadata={
        "help": "pairwise / rating: graded funniness sources (data/grades.py), those in langs used: humicroedit (en, "
                "edits 0-3, + task-2 human pairs), hahackathon (en, ratings 0-5), rjokes (en, upvote score 0-11), "
                "haha2021 (es, votes 1-5), ccl2019 (zh, task-2 levels 1/3/5). All but a Humicroedit sample need "
                "--data_dir."})
    vote_sources: list = field(default_factory=list, metadata={
        "help": "pairwise: people's side-by-side votes to train on, files of {prompt or theme, a, b, winner: a | b | "
                "tie | none} rows (a path or {path, columns, lang}); a seeded 10 % of their themes is held out and "
                "reported like a graded source. Decisive votes train; ties and 'neither' are counted."})
    pair_min_grade_gap: float = field(default=0.15, metadata={
        "help": "pairwise: pairs derived from graded texts need grades this far apart, as a share of the source's "
                "scale (0.15: 0.45 of Humicroedit's 0-3, 1.65 of r/Jokes' 0-11).", "range": Range(0, 1)})

    def __post_init__(self):
        if self.rm_objective not in ("classify", "pairwise", "rating"):
            raise ValueError(f"rm_objective must be classify, pairwise or rating, got {self.rm_objective!r}")
        if self.vote_sources and self.rm_objective != "pairwise":
            raise ValueError(f"vote_sources are side-by-side choices: they train rm_objective pairwise, not "
                             f"{self.rm_objective}")

    @property
    def stage_name(self) -> str:
        return "rm" if self.rm_objective == "classify" else f"rm_{self.rm_objective}"


@dataclass
class AlarmArgs:
    """Thresholds of the RL alarms (rl/monitor.py): the signatures of reward hacking and silent failure."""

    alarm_min_dist2: float = field(default=0.35, metadata={
        "help": "Repetition alarm: batch Dist-2 below this while the RM score is above its first value.",
        "range": _SHARE})
    alarm_max_drift_rate: float = field(default=0.0, metadata={
        "help": "Script-drift alarm: share of completions with letters outside the language's script above this.",
        "range": _SHARE})
    alarm_max_clipped_ratio: float = field(default=0.5, metadata={
        "help": "No-EOS alarm: share of completions cut at max_new_tokens above this.", "range": _SHARE})
    alarm_max_kl: float = field(default=1.0, metadata={
        "help": "KL alarm: KL to the reference above this.", "range": _NON_NEGATIVE})
    alarm_max_zero_std: float = field(default=0.75, metadata={
        "help": "No-signal alarm: share of groups whose completions all got the same reward above this.",
        "range": _SHARE})
    alarm_stop: bool = field(default=False, metadata={
        "help": "Stop training (after saving a checkpoint) when an alarm fires, instead of only warning."})
    log_samples_steps: int = field(default=5, metadata={
        "help": "Write sample completions with their component scores to TensorBoard text every N steps (0: never).",
        "range": _NON_NEGATIVE})


@dataclass
class FromSFTArgs:
    """Stages that start from the SFT policy: its adapter is merged into the base and a fresh LoRA trains on top,
    so 'adapter disabled' (the KL / preference reference) is the SFT policy."""

    sft_adapter: str | None = field(default=None, metadata={
        "help": "SFT LoRA adapter to start from. None: <runs_dir>/<run_name>/sft/final."})

    def sft_adapter_dir(self) -> Path:
        return Path(self.sft_adapter) if self.sft_adapter else self.previous_stage_dir("sft") / "final"


@dataclass
class RLArgs:
    """What the online RL stages (GRPO, PPO) share."""

    kl_beta: float = field(default=0.04, metadata={
        "help": "Weight of the per-token KL to the SFT reference (GRPO: in the loss, 0 loads no reference; PPO: the "
                "penalty -beta * (log pi - log pi_ref) in the reward, its initial value when kl_target is set). Too "
                "small lets the policy collapse onto a reward hack, too large stops learning.", "range": _NON_NEGATIVE})
    balance_prompt_types: bool = field(default=True, metadata={
        "help": "Repeat the rarer prompt type (word prompts in MWAHAHA) so RL sees both types equally often."})
    gold_reward_model: str | None = field(default=None, metadata={
        "help": "Over-optimisation watch (GRPO, PPO): an independent scorer the policy does not train on -- the "
                "directory of a trained reward model (a classifier, or a ranking RM of other data or seed) or a "
                "component the weights leave out (rank_reward, ensemble_reward) -- that scores held-out samples every "
                "gold_eval_steps steps beside the proxy (the training composite). None: no watch."})
    gold_eval_steps: int = field(default=0, metadata={
        "help": "Steps between gold evaluations (0: never).", "range": _NON_NEGATIVE})


@dataclass
class RLStageArgs(AlarmArgs, RLArgs, FromSFTArgs, RewardArgs, PromptArgs, PolicyStageArgs):
    """What GRPO and PPO share: the SFT start, prompts, the composite reward, KL and alarms."""


@dataclass
class GRPOArgs(TrainerArgs, UnslothArgs, RLStageArgs):
    """GRPO (TRL GRPOTrainer) of the SFT policy against the composite reward."""

    trainer_config: ClassVar[type] = GRPOConfig
    trainer_aliases: ClassVar[dict[str, str]] = {**TrainerArgs.trainer_aliases, "beta": "kl_beta",
                                                 "max_completion_length": "max_new_tokens"}

    num_generations: int = field(default=4, metadata={
        "help": "Group size G: completions per prompt.", "range": Range(2)})
    loss_type: str = field(default="dapo", metadata={"help": "TRL GRPO loss aggregation: grpo, dapo, dr_grpo, bnpo."})
    epsilon: float = field(default=0.2, metadata={
        "help": "PPO-style clip range of the importance ratio.", "range": _POSITIVE})
    use_vllm: bool = field(default=False, metadata={
        "help": "Generate with vLLM (TRL's use_vllm, colocated on the training GPU). GPU only; requirements-gpu.txt."})

    def __post_init__(self):
        RewardArgs.__post_init__(self)
        if self.num_generations < 2:
            raise ValueError(f"GRPO needs num_generations >= 2 to form a group, got {self.num_generations}")
        if self.batch_size % self.num_generations:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of num_generations "
                             f"({self.num_generations}): each step takes whole groups")


@dataclass
class PPOArgs(TrainArgs, RLStageArgs):
    """PPO (rl/ppo.py) of the SFT policy: text-level composite reward at the last token, per-token KL to the SFT
    reference, a value head on the policy's hidden states, GAE, clipped policy and value losses."""

    max_steps: int = field(default=20, metadata={
        "help": "PPO iterations: one rollout, then ppo_epochs passes over it.", "range": _AT_LEAST_1})
    batch_size: int = field(default=8, metadata={
        "help": "Completions sampled per rollout (one per prompt).", "range": _AT_LEAST_1})
    minibatch_size: int = field(default=4, metadata={
        "help": "Completions per optimizer step inside an iteration.", "range": _AT_LEAST_1})
    ppo_epochs: int = field(default=2, metadata={"help": "Passes over each rollout.", "range": _AT_LEAST_1})
    kl_target: float | None = field(default=None, metadata={
        "help": "Adaptive KL controller (Ziegler et al. 2019): target sequence KL (nats). None: beta stays fixed.",
        "range": _POSITIVE})
    kl_horizon: int = field(default=10000, metadata={
        "help": "Adaptive KL controller horizon, in sampled completions.", "range": _AT_LEAST_1})
    gamma: float = field(default=1.0, metadata={
        "help": "Discount over completion tokens (1: the joke is one episode).", "range": _SHARE})
    gae_lambda: float = field(default=0.95, metadata={
        "help": "GAE lambda: 1 = Monte Carlo returns, 0 = one-step TD.", "range": _SHARE})
    clip_range: float = field(default=0.2, metadata={
        "help": "Clip range of the policy's probability ratio.", "range": _POSITIVE})
    clip_range_value: float = field(default=0.2, metadata={
        "help": "Clip range of the value prediction around the rollout's.", "range": _POSITIVE})
    vf_coef: float = field(default=0.1, metadata={
        "help": "Weight of the value loss in the total loss.", "range": _NON_NEGATIVE})
    entropy_coef: float = field(default=0.0, metadata={
        "help": "Weight of the entropy bonus (0: entropy only logged).", "range": _NON_NEGATIVE})
    whiten_advantages: bool = field(default=True, metadata={"help": "Normalize advantages to mean 0, std 1 over each rollout's tokens."})
    value_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the value head. None: learning_rate.", "range": _NON_NEGATIVE})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm.", "range": _POSITIVE})

    def __post_init__(self):
        RewardArgs.__post_init__(self)
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of minibatch_size ({self.minibatch_size})")
        if self.kl_target is not None and self.kl_target <= 0:
            raise ValueError(f"kl_target must be > 0 (or None for a fixed beta), got {self.kl_target}")


@dataclass
class PreferenceArgs(TrainerArgs, FromSFTArgs, PolicyStageArgs):
    """What the offline preference stages (DPO, DPOP, PGCL) share. Reference = the SFT policy (new LoRA disabled).
    TRL's DPOConfig fields are accepted; our own losses (DPOP, PGCL stage 2) run on transformers' Trainer and take
    only its TrainingArguments."""

    trainer_config: ClassVar[type] = DPOConfig

    beta: float = field(default=0.5, metadata={"help": "Preference beta (seed: 0.5).", "range": _POSITIVE})
    max_length: int = field(default=256, metadata={
        "help": "Prompt + completion tokens; longer sequences are truncated.", "range": _AT_LEAST_1})
    pun_sources: list[str] = field(default_factory=lambda: ["sample"], metadata={
        "help": "Puns for PGCL and preference_source 'puns': sample, chinesepun, pun2pun."})
    self_samples: int = field(default=4, metadata={
        "help": "Own samples per prompt for 'self' pairs and pun examples.", "range": _AT_LEAST_1})
    self_prompts: int = field(default=64, metadata={
        "help": "Prompts sampled for 'self' pairs and pun examples.", "range": _AT_LEAST_1})


@dataclass
class DPOArgs(RewardArgs, PromptArgs, PreferenceArgs):
    """Offline preference training (rl/dpo.py) of the SFT policy on pairs: DPO (TRL) or DPOP (ours)."""

    loss: str = field(default="dpo", metadata={
        "help": "dpo (TRL DPOTrainer) or dpop (DPO-Positive). The stage directory is named after it; the two-stage "
                "pun curriculum has its own entry point (rl/pgcl.py)."})
    preference_source: str | dict = field(default="humicroedit", metadata={
        "help": "Pairs: 'humicroedit' (task-2 human pairs; the sample copy without --data_dir), "
                "'self' (the SFT policy's own samples of the RL prompts, ranked by the composite reward and the "
                "structure check), 'puns' (gold pun vs own structure failure), or a file / dataset of pairs in TRL "
                "(prompt, chosen, rejected; standard or conversational), ms-swift or LLaMA-Factory (ShareGPT or "
                "alpaca) shape, JSONL or a JSON array; system prompts and history are kept."})
    max_pairs: int | None = field(default=512, metadata={
        "help": "Use at most this many examples (seeded sample). None: all.", "range": _AT_LEAST_1})
    min_grade_gap: float = field(default=0.0, metadata={
        "help": "Humicroedit: drop pairs whose mean grades differ by less.", "range": _NON_NEGATIVE})
    min_score_gap: float = field(default=0.05, metadata={
        "help": "'self' pairs: drop pairs whose composite rewards differ by less.", "range": _NON_NEGATIVE})
    dpop_lambda: float = field(default=0.5, metadata={
        "help": "DPOP lambda (seed: 0.5; >= 5 destroyed fluency in their runs).", "range": _NON_NEGATIVE})
    min_completion_tokens: int = field(default=8, metadata={
        "help": "A pair whose prompt (cut on the left to max_prompt_tokens) leaves fewer tokens of max_length than "
                "this for a completion that needs them is dropped (and counted): a few tokens of each answer are no "
                "preference to learn.", "range": _AT_LEAST_1})
    max_dropped_share: float = field(default=0.1, metadata={
        "help": "Refuse to train when more than this share of the pairs does not fit max_length (no room for a "
                "completion, or chosen and rejected identical once cut); 1.0 accepts any loss. Pairs left out by "
                "langs or max_pairs are counted but do not count here.", "range": _SHARE})

    def __post_init__(self):
        RewardArgs.__post_init__(self)
        if self.loss not in ("dpo", "dpop"):
            hint = " (the pun curriculum runs as python rl/pgcl.py)" if self.loss == "pgcl" else ""
            raise ValueError(f"loss must be dpo or dpop, got {self.loss!r}{hint}")


@dataclass
class PGCLArgs(TextCheckArgs, RewardModelArgs, PreferenceArgs):
    """The two-stage pun curriculum PGCL (rl/pgcl.py): stage 1 DPO of gold puns over the policy's
    own structure failures, stage 2 the three-way humor loss against the stage-1 model."""

    pgcl_gold_weight: float = field(default=1.0, metadata={
        "help": "PGCL stage 2: weight of -log s(r(gold) - r(y*)).", "range": _NON_NEGATIVE})
    pgcl_fail_weight: float = field(default=0.5, metadata={
        "help": "PGCL stage 2: weight of -log s(r(y*) - r(fail)) (the curriculum's gamma; the seed authors' code put "
                "gamma on the gold term).",
        "range": _NON_NEGATIVE})
    stage1_max_steps: int | None = field(default=None, metadata={
        "help": "PGCL stage 1 steps. None: max_steps.", "range": _AT_LEAST_1})
    structure_eval_prompts: int = field(default=16, metadata={
        "help": "Held-out pun prompts sampled before and after each stage for the structure success rate.",
        "range": _AT_LEAST_1})

    def __post_init__(self):
        self.rm_component = self.rm_component or "rm_reward"     # PGCL has no reward weights to take it from


@dataclass
class AnnotateArgs(LabeledDataArgs, DataArgs, StageArgs, RunArgs):
    """Annotate labeled jokes into task data with a local instruct LLM (sft/annotate.py, the seeds' data step):
    a related headline and two key words (a verb and a noun) per joke, validated, resumable."""

    annotator_model: str = field(default="pkg:smollm2-135m-instruct", metadata={
        "help": "The annotator: a pkg: model on CPU, a hub id or a folder on GPU (the seeds: Qwen/Qwen2.5-7B-Instruct)."})
    model_dtype: str = field(default="fp32", metadata={"help": "Weights of the annotator: fp32, bf16 or fp16."})
    max_jokes: int | None = field(default=None, metadata={
        "help": "Annotate at most this many humor rows (seeded sample of the labeled sources). None: all.",
        "range": _AT_LEAST_1})
    batch_size: int = field(default=8, metadata={
        "help": "Jokes annotated together (one generation batch).", "range": _AT_LEAST_1})
    max_new_tokens: int = field(default=96, metadata={
        "help": "Longest answer; a JSON answer needs about 40 tokens.", "range": _AT_LEAST_1})
    max_prompt_tokens: int = field(default=512, metadata={
        "help": "Instructions are cut on the left to this many tokens.", "range": _AT_LEAST_1})
    greedy: bool = field(default=True, metadata={"help": "Decode the first attempt greedily (False: sample it too)."})
    retry_temperature: float = field(default=0.7, metadata={
        "help": "Sampling temperature of the retries (and of the first attempt when greedy is off): a greedy retry "
                "would repeat itself.", "range": _POSITIVE})
    top_p: float = field(default=0.95, metadata={
        "help": "Nucleus mass when sampling.", "range": Range(0, 1, low_open=True)})
    max_retries: int = field(default=2, metadata={
        "help": "Retries of a rejected answer before it is counted by reason.", "range": _NON_NEGATIVE})
    headline_window: dict = field(default_factory=lambda: {"zh": [10, 40], "en": [3, 20], "es": [3, 20]}, metadata={
        "help": "Per language, [lo, hi] headline length (characters for zh, as the seeds' 10-40; words for en/es)."})
    use_vllm: bool = field(default=False, metadata={"help": "Generate with vLLM (GPU only, requirements-gpu.txt)."})


@dataclass
class ScoreArgs(RewardArgs, RunArgs):
    """Score texts with every reward component and the composite total (reward/score.py)."""


@dataclass
class PolicyToolArgs(RewardArgs, SamplingArgs, PolicyArgs, PromptArgs, DataArgs, RunArgs):
    """What the tools that sample a trained policy share (generate, evaluate, submit, export, sweeps)."""

    samples_per_prompt: int = field(default=1, metadata={
        "help": "Completions sampled per prompt.", "range": _AT_LEAST_1})
    gen_batch_size: int = field(default=8, metadata={
        "help": "Sequences generated together (left-padded).", "range": _AT_LEAST_1})
    rank_by: str = field(default="total", metadata={
        "help": "Select-best (generate/submit --best_of N, the arena's best-of-N rows): the score that picks a "
                "sample, 'total' (the composite) or any reward component, weighted or not (rank_reward for a "
                "preference RM)."})


@dataclass
class GenerateArgs(PolicyToolArgs):
    """Generate with a trained policy and score every completion (eval/generate.py)."""

    policy: str = field(default="grpo", metadata={
        "help": "'base', a finished stage of this run (sft, grpo, ...) or an adapter directory."})


@dataclass
class EvalArgs(PolicyToolArgs, StageArgs):
    """Evaluate policies (or output files) on the same held-out prompts with every metric of eval/metrics.py."""

    policies: list[str] | None = field(default=None, metadata={
        "help": "Policies to generate with and compare: 'base', finished stages of this run, adapter directories. "
                "None: base and every policy stage (common/stages.py); stages that have not run are skipped with a note."})
    baseline: str | None = field(default="base", metadata={
        "help": "Policy every other one battles for the win rate (judged by rm_component, same prompt ids). None: no win rate."})
    perplexity_model: str | None = field(default="base", metadata={
        "help": "Reference LM for perplexity: 'base' (the untrained policy model), any model spec, or None to skip."})
    arena_judge: str | None = field(default=None, metadata={
        "help": "The arena's judge (eval/arena.py): 'component:<name>' (a score the outputs carry), 'rm:<trained RM "
                "dir>' (several, comma-separated: their mean) or 'llm:<model>' (an instruct LM asked which of two jokes is funnier, both orders). Pick one "
                "the RL stages did not train on. None: no arena."})
    arena_tie_margin: float = field(default=0.05, metadata={
        "help": "A battle is a tie when the judge's preference, averaged over both orders, is within this of 0.5.",
        "range": Range(0, 0.5, high_open=True)})
    arena_bootstrap: int = field(default=200, metadata={
        "help": "Bootstrap rounds over prompts for the arena ratings' 95 % intervals.", "range": _AT_LEAST_1})
    arena_votes: list = field(default_factory=list, metadata={
        "help": "People's side-by-side votes to check the arena's judge against: files of {prompt or theme, a, b, "
                "winner: a | b | tie | none} rows (JSONL, a JSON array, CSV; a path or {path, columns, lang}), or "
                "'humicroedit' (task-2 dev under --data_dir, ties kept)."})
    arena_max_votes: int = field(default=500, metadata={
        "help": "At most this many votes of each arena_votes source are judged (a seeded sample).",
        "range": _AT_LEAST_1})
    arena_best_of: list[str] = field(default_factory=list, metadata={
        "help": "Policies to also enter in the arena as best-of-N: per prompt, the one of their samples_per_prompt "
                "samples that rank_by scores highest (among those with both required words)."})

    def __post_init__(self):
        super().__post_init__()
        kind = (self.arena_judge or "").partition(":")
        if self.arena_judge and (kind[0] not in ("component", "rm", "llm") or not kind[2]):
            raise ValueError(f"arena_judge {self.arena_judge!r}: expected component:<name>, rm:<dir> or llm:<model>")
        if self.arena_best_of and self.arena_judge == f"component:{self.rank_by}":
            raise ValueError(f"arena_best_of picked by rank_by {self.rank_by!r}, the judge's own score, would win the "
                             f"arena by construction: rank by another score (total, the reward RL trained on)")
        if self.arena_best_of and self.samples_per_prompt < 2:
            raise ValueError(f"arena_best_of {self.arena_best_of} needs samples_per_prompt >= 2 to pick from, "
                             f"got {self.samples_per_prompt}")


# TRL / transformers settings passed through under their own names (trainer_args) that those libraries only
# check when training starts, or never (gradient_accumulation_steps 0 ends in a ZeroDivisionError after loading)
TRAINER_RANGES = {
    "gradient_accumulation_steps": _AT_LEAST_1, "per_device_train_batch_size": _AT_LEAST_1,
    "per_device_eval_batch_size": _AT_LEAST_1, "num_train_epochs": _POSITIVE, "warmup_ratio": _SHARE,
    "warmup_steps": _NON_NEGATIVE, "weight_decay": _NON_NEGATIVE, "max_grad_norm": _NON_NEGATIVE,
    "adam_beta1": Range(0, 1, high_open=True), "adam_beta2": Range(0, 1, high_open=True), "adam_epsilon": _POSITIVE,
    "logging_steps": _POSITIVE, "save_steps": _POSITIVE, "eval_steps": _POSITIVE, "save_total_limit": _AT_LEAST_1,
    "generation_batch_size": _AT_LEAST_1, "steps_per_generation": _AT_LEAST_1, "num_iterations": _AT_LEAST_1,
    "epsilon": _POSITIVE, "epsilon_high": _POSITIVE, "max_length": _AT_LEAST_1, "max_prompt_length": _AT_LEAST_1,
}


def check_ranges(cfg) -> None:
    """Refuse a numeric field outside its range (its metadata's "range"), or a pass-through trainer setting outside
    its range (TRAINER_RANGES), naming it, before anything loads.

    >>> check_ranges(PPOArgs(kl_beta=-1.0))
    Traceback (most recent call last):
    ValueError: kl_beta must be >= 0, got -1.0
    """
    for f in fields(cfg):
        value, allowed = getattr(cfg, f.name), f.metadata.get("range")
        if allowed is None or value is None or isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        if value not in allowed:
            raise ValueError(f"{f.name} must be {allowed}, got {value!r}")
    for name, value in (getattr(cfg, "trainer_args", None) or {}).items():
        allowed = TRAINER_RANGES.get(name)
        if isinstance(value, str) and allowed is not None:
            try:
                value = float(value)            # 'inf' / 'nan' stay strings in YAML
            except ValueError:
                raise ValueError(f"{name} must be a number {allowed}, got {value!r}") from None
        if allowed is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value) or value not in allowed:
            raise ValueError(f"{name} must be {allowed if math.isfinite(value) else 'a finite number'}, got {value!r}")
