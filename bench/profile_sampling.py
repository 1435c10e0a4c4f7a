"""Where a sampled token's time goes on the CPU default: torch.profiler over generate() at one batch size, the way
GRPO and PPO sample (SFT policy merged, a fresh LoRA folded in, bf16 copies of the Linear weights under bf16 autocast,
FastTopP), as a table of the
operators with the most self CPU time, and the share spent in matrix multiplies (the arithmetic floor).

    python bench/profile_sampling.py                 # after ./run.sh (uses runs/cpu_default's SFT adapter)
    python bench/profile_sampling.py --batch 32 --new_tokens 48 --rows 15
Timings vary several-fold when another process shares the two cores: run it alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from peft import get_peft_model
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.config import parse_config  # noqa: E402
from common.generation import sampling_processors, sampling_weights  # noqa: E402
from common.models import load_policy  # noqa: E402
from common.stage_configs import GRPOArgs  # noqa: E402
from common.training import lora_config  # noqa: E402
from data.loaders import load_prompts  # noqa: E402
from data.prompts import format_for_model, prompt_text  # noqa: E402

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul",
           "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu_default.yaml"))
    parser.add_argument("--run_name", default="cpu_default", help="Finished run whose SFT adapter to use.")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new_tokens", type=int, default=48)
    parser.add_argument("--rows", type=int, default=15, help="Operators shown.")
    parser.add_argument("--bf16_base", action="store_true",
                        help="Cast the merged policy to bf16 before adding the LoRA (what a bf16 base would save).")
    args = parser.parse_args()
    cfg = parse_config(GRPOArgs, "grpo", ["--config", args.config, "--run_name", args.run_name])
    model, tokenizer = load_policy(cfg.policy_model, [cfg.sft_adapter_dir()])
    if args.bf16_base:
        model = model.to(torch.bfloat16)
    model = get_peft_model(model, lora_config(cfg)).eval()
    tasks = load_prompts(cfg.prompt_sources, cfg.data_dir, cfg.langs, 64, cfg.seed)
    prompts = [format_for_model(tokenizer, prompt_text(t)) for t in tasks]
    tokenizer.padding_side = "left"
    enc = tokenizer((prompts * (args.batch // len(prompts) + 1))[:args.batch], return_tensors="pt", padding=True,
                    add_special_tokens=False)
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=True,
                  pad_token_id=tokenizer.pad_token_id, **sampling_processors(model, 0.9, 0.95))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), \
            sampling_weights(model, fold_lora=True, bf16=True):
        model.generate(**enc, **kwargs)                                  # warm-up
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.generate(**enc, **kwargs)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    print(f"batch {args.batch}, {args.new_tokens} new tokens: {wall:.2f} s under the profiler "
          f"({args.batch * args.new_tokens / wall:.0f} tokens/s); threads {torch.get_num_threads()}")
    in_ops = total / 1e6                                                 # microseconds -> s
    print(f"inside operators {in_ops:.2f} s: matrix multiplies and attention {100 * matmul / total:.0f} %, the rest "
          f"(elementwise ops, casts, cache bookkeeping, sampling) {100 - 100 * matmul / total:.0f} %; outside any "
          f"operator (Python: generate's loop, module calls) {max(wall - in_ops, 0.0):.2f} s\n")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
