"""Write a checkpoint for use elsewhere: `python export.py RUN/best.ckpt OUT.pth`.

The published format is the authors' (`{"last_epoch", "best_acc", "count", "retrieval_model_dict",
"optimizer_dict"}`, their key names), loadable by their code with `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import argparse

from engine.exit import run_main
from utils.checkpoint import PUBLISHED_MODEL_KEY, CheckpointError, export_published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="this project's .ckpt (or any accepted checkpoint)")
    parser.add_argument("out", help="the .pth file to write")
    opt = parser.parse_args(argv)
    published = export_published(opt.checkpoint, opt.out)
    print(f"{opt.out}: published format, {len(published[PUBLISHED_MODEL_KEY])} tensors, last_epoch "
          f"{published['last_epoch']}, best_acc {published['best_acc']}")
    return 0


if __name__ == "__main__":
    run_main(main, (CheckpointError,))
