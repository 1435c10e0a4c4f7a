"""The composite reward: an explicit weighted sum of components, with weights per prompt type.

    total(text) = sum over components c of weights[prompt_type][c] * c(text)

The weights live in YAML under the components' function names, e.g. the seed authors' formula:
    weights: {words: {rm_reward: 0.55, coverage_reward: 0.25, length_reward: 0.15, repetition_penalty: -0.10}}
No hidden normalisation; a NaN or inf component raises with the offending text.

Your own components: `reward_module: path/to/rewards.py` registers every public function of that file with TRL's
reward-function signature (`completions` and `**kwargs`, the dataset columns: prompt_type, words, lang,
instruction, finished) under its own name, beside the built-in ones.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
from pathlib import Path

from common.generation import finished_with_stop
from common.stage_configs import HUMOR_COMPONENTS
from data.loaders import TaskPrompt
from data.prompts import prompt_text, task_theme
from reward import components as C
from reward.model import EnsembleRewardModel, HumorRewardModel, RankingRewardModel, load_scorer, mean_scorer

# The one registry: component name -> builder(reward config, reward model or None) -> callable.
COMPONENTS = {
    "rm_reward": lambda cfg, rm: C.make_rm_reward(rm),
    "coverage_reward": lambda cfg, rm: C.coverage_reward,
    "length_reward": lambda cfg, rm: C.make_length_reward(cfg.length_window),
    "repetition_penalty": lambda cfg, rm: C.make_repetition_penalty(cfg.repetition_ngram),
    "script_drift_penalty": lambda cfg, rm: C.script_drift_penalty,
    "no_eos_penalty": lambda cfg, rm: C.no_eos_penalty,
    "gibberish_penalty": lambda cfg, rm: C.gibberish_penalty,
    "empty_penalty": lambda cfg, rm: C.empty_penalty,
    "degenerate_penalty": lambda cfg, rm: C.make_degenerate_penalty(cfg.repetition_ngram, cfg.repetition_threshold,
                                                                    cfg.gibberish_threshold),
    # a ranking reward model's (0, 1) score (reward/model.py RankingRewardModel), or several models' mean;
    # rm_reward's model is not needed
    "rank_reward": lambda cfg, rm: C.make_rm_reward(
        mean_scorer(cfg.ranking_model_dirs(), cfg.rm_batch_size, cfg.rm_max_length, RankingRewardModel),
        name="rank_reward"),
    # mean - ensemble_k * std of the rm_ensemble classifiers' P(humor); ensemble_std is their disagreement
    "ensemble_reward": lambda cfg, rm: C.make_rm_reward(load_ensemble(cfg), name="ensemble_reward"),
    "ensemble_std": lambda cfg, rm: C.make_ensemble_std(load_ensemble(cfg)),
}


# the components a trained model computes (their spread over policies is reported by evaluation)
MODEL_COMPONENTS = HUMOR_COMPONENTS


def load_ensemble(cfg) -> EnsembleRewardModel:
    """The config's ensemble, loaded once for both of its components (ensemble_reward, ensemble_std)."""
    return _ensemble(tuple(cfg.rm_ensemble), cfg.ensemble_k, cfg.rm_batch_size, cfg.rm_max_length)


@functools.lru_cache(maxsize=4)
def _ensemble(paths: tuple[str, ...], k: float, batch_size: int, max_length: int) -> EnsembleRewardModel:
    return EnsembleRewardModel([HumorRewardModel(p, batch_size, max_length) for p in paths], k)


@functools.lru_cache(maxsize=None)
def load_reward_module(path: str) -> dict:
    """name -> function for every public function defined in a Python file whose signature is TRL's reward
    signature: a `completions` parameter and **kwargs (the dataset columns)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reward_module: {path} not found")
    spec = importlib.util.spec_from_file_location(f"humor_rl_user_rewards_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = {}
    for name, fn in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != module.__name__:
            continue
        params = inspect.signature(fn).parameters
        if "completions" in params and any(p.kind is p.VAR_KEYWORD for p in params.values()):
            found[name] = fn
    if not found:
        raise ValueError(f"reward_module {path}: no public function with the signature f(completions, **kwargs)")
    return found


def registry(cfg) -> dict:
    """The built-in COMPONENTS plus the functions of cfg.reward_module (if set), as builders."""
    path = getattr(cfg, "reward_module", None)
    if not path:
        return COMPONENTS
    user = load_reward_module(str(path))
    clash = sorted(set(user) & set(COMPONENTS))
    if clash:
        raise ValueError(f"reward_module {path}: {clash} would shadow built-in components; rename them")
    return {**COMPONENTS, **{name: (lambda fn: lambda cfg, rm: fn)(fn) for name, fn in user.items()}}


def weighted_names(cfg, nonzero: bool = False) -> set[str]:
    """The components cfg.reward_weights names for some prompt type (nonzero: with a weight other than 0)."""
    return {name for per_type in cfg.reward_weights.values() for name, w in per_type.items() if w or not nonzero}


def component_names(cfg) -> list[str]:
    """Every component some prompt type of cfg.reward_weights weights, in registry order; unknown names raise."""
    known = registry(cfg)
    used = weighted_names(cfg)
    unknown = sorted(used - set(known))
    if unknown:
        raise ValueError(f"unknown reward component(s) {unknown}; valid: {sorted(known)}")
    return [name for name in known if name in used]


def build_components(cfg, reward_model=None, names: list[str] | None = None) -> dict:
    """name -> callable for the named components (None: every component the config's weights use)."""
    known = registry(cfg)
    names = component_names(cfg) if names is None else names
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown reward component(s) {unknown}; valid: {sorted(known)}")
    if "rm_reward" in names and reward_model is None:
        raise ValueError("the weights use rm_reward but no reward model was given")
    return {name: known[name](cfg, reward_model) for name in names}


def build_scorer(cfg, names: list[str] | None = None) -> dict:
    """The one place a scorer is built: build_components with the trained humor RM (cfg.reward_model_dir())
    loaded when a component needs it. names: the components to build (None: those the weights use)."""
    names = component_names(cfg) if names is None else names
    if cfg.rm_component not in registry(cfg):
        raise ValueError(f"rm_component {cfg.rm_component!r} is not a reward component; valid: {sorted(registry(cfg))}")
    rm = HumorRewardModel(cfg.reward_model_dir(), cfg.rm_batch_size, cfg.rm_max_length) if "rm_reward" in names else None
    return build_components(cfg, rm, names)


def scorer_with(cfg, *extra: str) -> dict:
    """build_scorer's components plus the named ones the weights leave out (the score select-best ranks by, the
    arena's judge; 'total' is the composite itself): every row then carries them, unweighted."""
    names = component_names(cfg)
    for name in extra:
        if name != "total" and name not in names:
            if name not in registry(cfg):
                raise ValueError(f"{name!r} is neither 'total' nor a reward component; valid: {sorted(registry(cfg))}")
            names = [*names, name]
    return build_scorer(cfg, names)


def build_gold(cfg):
    """The over-optimisation watch's gold scorer (cfg.gold_reward_model): a component name, or the directory of a
    trained reward model of any objective (a classifier's P(humor), a ranking model's centred sigmoid). It is never
    in the training weights, so the policy cannot train on it."""
    name = cfg.gold_reward_model
    known = registry(cfg)
    if name in known:
        if name in weighted_names(cfg, nonzero=True):
            raise ValueError(f"gold_reward_model {name!r} is weighted in the training reward: the gold must be a "
                             "scorer the policy does not train on")
        return build_scorer(cfg, [name])[name]
    if not Path(name).is_dir():
        raise ValueError(f"gold_reward_model {name!r} is neither a reward component ({sorted(known)}) nor a directory")
    return C.make_rm_reward(load_scorer(name, cfg.rm_batch_size, cfg.rm_max_length), name="gold")


def checked(name: str, values, completions: list[str]) -> list[float | None]:
    """A component's output, refused unless it is one number (or None) per completion, all finite."""
    if not isinstance(values, (list, tuple)) or len(values) != len(completions):
        got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"reward component {name} returned {got} values for {len(completions)} completions")
    out = []
    for v, text in zip(values, completions):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"reward component {name} returned {v!r} (not a number) for the text {text!r}")
        if v is not None and not math.isfinite(v):
            raise ValueError(f"{name} gave {v} for the text {text!r}")
        out.append(None if v is None else float(v))
    return out


def task_columns(tasks: list[TaskPrompt]) -> dict[str, list]:
    """The columns the reward components read, one entry per task: prompt_type, words, lang, instruction (the raw
    prompt, for a classifier trained on prompt + text) and theme (the words or headline, for a prompt-aware ranking
    reward model)."""
    return {"prompt_type": [t.prompt_type for t in tasks],
            "words": [list(t.words) if t.words else None for t in tasks],
            "lang": [t.lang for t in tasks],
            "instruction": [prompt_text(t) for t in tasks],
            "theme": [task_theme(t) for t in tasks]}


def component_logs(values: dict[str, list[float | None]], prompt_types: list[str] | None = None) -> dict[str, float]:
    """Log entries of component values: rewards/<name>/mean over every sample it applies to and, given the
    samples' prompt types, rewards/<type>/<name>/mean per type (the tags TRL's GRPO uses).

    >>> component_logs({"coverage_reward": [1.0, None, 0.5]}, ["words", "headline", "words"])
    {'rewards/coverage_reward/mean': 0.75, 'rewards/words/coverage_reward/mean': 0.75}
    """
    logs = {}
    for name, column in values.items():
        applied = [v for v in column if v is not None]
        if applied:
            logs[f"rewards/{name}/mean"] = sum(applied) / len(applied)
        for prompt_type in sorted(set(prompt_types or [])):
            typed = [v for v, t in zip(column, prompt_types) if t == prompt_type and v is not None]
            if typed:
                logs[f"rewards/{prompt_type}/{name}/mean"] = sum(typed) / len(typed)
    return logs


def score(fns: dict, completions: list[str], prompt_type: list[str], weights: dict, **columns) -> dict:
    """Every component and the weighted total for a batch.

    Returns {"total": [float], <component name>: [float | None], ...}. `columns` are the dataset columns the
    components read (words, lang, instruction)."""
    values = {name: checked(name, fn(completions, prompt_type=prompt_type, **columns), completions)
              for name, fn in fns.items()}
    totals = []
    for i, text in enumerate(completions):
        if prompt_type[i] not in weights:
            raise ValueError(f"no reward weights for prompt type {prompt_type[i]!r}; have {sorted(weights)}")
        total = 0.0
        for name, w in weights[prompt_type[i]].items():
            v = values[name][i]
            if v is None:
                raise ValueError(f"{name} does not apply to a {prompt_type[i]!r} prompt but has weight {w} there")
            if not math.isfinite(v):
                raise ValueError(f"{name} gave {v} for the text {text!r}")
            total += w * v
        totals.append(total)
    return {"total": totals, **values}


def trl_reward_functions(fns: dict, weights: dict, record: dict | None = None,
                         stop_ids: list[int] | None = None) -> tuple[list, list[float]]:
    """The composite as TRL reward functions: one per (prompt type, component) with that type's weight.

    Each returns the raw component for samples of its prompt type and None for the others, so TRL's weighted
    nansum is exactly the per-type composite, and TRL logs every raw component as
    rewards/<prompt type>/<component>/mean. If `record` is given, every value is also appended to
    record[<component>] (for a per-component mean over all prompt types). TRL passes no `finished` column:
    it is derived from the completion ids (a completion finished if it holds one of `stop_ids`).
    Each component runs once per step over every completion of every prompt type (one reward-model forward over
    the whole batch, not one per type); the per-type functions read their share of that result."""
    funcs, trl_weights = [], []
    step_cache: dict = {}
    for prompt_type, per_type in weights.items():
        for name, w in per_type.items():
            funcs.append(_only_for_type(fns[name], name, prompt_type, record, stop_ids, step_cache))
            trl_weights.append(float(w))
    return funcs, trl_weights


def _only_for_type(fn, name: str, only_type: str, record: dict | None, stop_ids: list[int] | None, step_cache: dict):
    def reward(completions: list[str], prompt_type: list[str], **kwargs) -> list[float | None]:
        if "finished" not in kwargs and "completion_ids" in kwargs and stop_ids is not None:
            kwargs["finished"] = finished_with_stop(kwargs["completion_ids"], stop_ids)
        idx = [i for i, t in enumerate(prompt_type) if t == only_type]
        if not idx:
            return [None] * len(completions)
        if step_cache.get("completions") is not completions:      # a new step: TRL passes one list to every function
            step_cache.clear()
            step_cache["completions"] = completions
        if name not in step_cache:
            step_cache[name] = checked(name, fn(completions, prompt_type=prompt_type, **kwargs), completions)
        everyone = step_cache[name]
        values = [everyone[i] for i in idx]
        out: list[float | None] = [None] * len(completions)
        for i, v in zip(idx, values):
            out[i] = v
        if record is not None:
            record.setdefault(name, []).extend(v for v in values if v is not None)
        return out

    reward.__name__ = f"{only_type}/{name}"
    return reward
