"""PNG plots of a stage's TensorBoard scalars (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every event file under tb_dir."""
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def reward_tags(scalars: dict) -> list[str]:
    """The tags worth a panel in a GRPO/PPO run: total reward, every component's mean over all prompt types
    (rewards/<component>/mean), KL, the no-EOS share, batch Dist-2 and script drift, in that order, when present."""
    components = sorted(t for t in scalars if t.startswith("train/rewards/") and t.endswith("/mean")
                        and t.count("/") == 3)       # train/rewards/<component>/mean, not .../<type>/<component>/mean
    extras = [t for t in ("train/kl", "train/completions/clipped_ratio", "train/gen/dist2", "train/gen/drift_rate",
                          "gold/proxy", "gold/gold") if t in scalars]      # gold/*: the over-optimisation watch
    return [t for t in ("train/reward",) if t in scalars] + components + extras


def plot_scalars(scalars: dict, tags: list[str], path: Path, title: str) -> Path | None:
    """One panel per tag, value against step; None if there is nothing to plot."""
    tags = [t for t in tags if scalars.get(t)]
    if not tags:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(tags))
    rows = math.ceil(len(tags) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        steps, values = zip(*scalars[tag])
        ax.plot(steps, values, marker="o", markersize=3)
        ax.set_title(tag.removeprefix("train/"), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tags):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
