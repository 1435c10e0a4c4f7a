"""run.sh's pipeline: the stages it runs, the preset they share, and a check of every stage's settings up front.

    python scripts/pipeline_preset.py OUT.yaml [--config PRESET] [--key value ...]

writes PRESET with the flags laid over it to OUT.yaml (common.config.overlay_preset), parses every stage's config
from it exactly as that stage will, and prints the stages' command lines, one a line, for run.sh to run with
`--config OUT.yaml`. A setting one stage refuses (`--kl_beta -1` is GRPO's) thus stops the pipeline before SFT and
the reward models train for tens of minutes, in one line naming the stage (exit 2).
"""

from pathlib import Path

import yaml

from common.cli import cli
from common.config import overlay_preset, parse_config
from common.stages import Stage, stage

# (stage, the flags its command line adds to the shared preset), in the order run.sh runs them: the one list of
# the pipeline's stages, so the stages checked are the stages run
PIPELINE = (
    ("sft", ()),
    ("rm", ("--vote_sources", "[]")),   # the classifier learns from labels: votes given to run.sh train the next stage
    ("rm_pairwise", ("--rm_objective", "pairwise", "--with_prompt", "true")),
    ("grpo", ()),
    ("eval", ()),
)


def pipeline_stages() -> list[tuple[Stage, tuple[str, ...]]]:
    """(stage, its extra flags) for every stage of PIPELINE; an unknown name fails here rather than mid-run."""
    return [(stage(name), extra) for name, extra in PIPELINE]


def stage_command(entry: Stage, extra: tuple[str, ...]) -> str:
    """The command line run.sh gives python for a stage, before `--config PRESET` (its script, as users run it)."""
    return " ".join([entry.module.replace(".", "/") + ".py", *extra])


def write_preset(out: Path, flags: list[str]) -> None:
    """The preset every stage reads: `--config` (if given) with the other flags laid over it as shared keys."""
    config = None
    if "--config" in flags:
        i = flags.index("--config")
        config, flags = flags[i + 1], flags[:i] + flags[i + 2:]
    out.write_text(yaml.safe_dump(overlay_preset(config, flags), sort_keys=False, allow_unicode=True), encoding="utf-8")


def check_stage_settings(preset: Path) -> None:
    """Parse each stage's config from the preset with the argv that stage gets, as its entry point does first
    (types, ranges, the dataclass's own checks), loading no model or data and writing nothing; a refusal names
    the stage, since the same flag is fine for the stages before it."""
    for entry, extra in pipeline_stages():
        try:
            parse_config(entry.config, entry.section, ["--config", str(preset), *extra])
        except ValueError as e:
            raise ValueError(f"stage {entry.name} ({stage_command(entry, extra)}) refuses the settings, so no stage "
                             f"ran: {e}") from e


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("--"):
        raise SystemExit("usage: python scripts/pipeline_preset.py OUT.yaml [--config PRESET] [--key value ...]")
    out = Path(argv[0])
    write_preset(out, argv[1:])
    check_stage_settings(out)
    print("\n".join(stage_command(entry, extra) for entry, extra in pipeline_stages()))


if __name__ == "__main__":
    cli(main)()
