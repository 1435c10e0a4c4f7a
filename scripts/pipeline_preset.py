"""Write a preset with command-line flags laid over it, for run.sh's pipeline (common.config.overlay_preset).

    python scripts/pipeline_preset.py OUT.yaml [--config PRESET] [--key value ...]
"""

import sys
from pathlib import Path

import yaml

from common.config import overlay_preset


def main(argv: list[str]) -> None:
    out, flags = Path(argv[0]), argv[1:]
    config = None
    if "--config" in flags:
        i = flags.index("--config")
        config, flags = flags[i + 1], flags[:i] + flags[i + 2:]
    out.write_text(yaml.safe_dump(overlay_preset(config, flags), sort_keys=False, allow_unicode=True), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
