"""TensorBoard: every stage writes its events to <stage_dir>/tb."""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from transformers.integrations import TensorBoardCallback

from common.training import is_main_process


def tensorboard_callback(stage_dir: Path) -> TensorBoardCallback:
    """TensorBoard events in <stage_dir>/tb (transformers 5 has no logging_dir argument); written by the main
    process only (the callback's tb_writer is None on the others)."""
    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(stage_dir / "tb")) if is_main_process() else None)


def log_scalars(stage_dir: Path, scalars: dict[str, float], step: int) -> None:
    """Scalars measured after training (held-out metrics, stop rate) into the stage's TensorBoard directory.
    (The Trainer's TensorBoard callback closes its writer at the end of training.)"""
    with SummaryWriter(log_dir=str(stage_dir / "tb")) as writer:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
