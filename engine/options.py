"""The entry points' flags: the authors' parser with this project's flags, and what a call was given.

Each dataset's flags come from its data module (`dataset.datamodule.DATAMODULES`), the model's from
`add_model_flags`, which `localize.py` shares.
"""

from __future__ import annotations

import argparse

from dataset.datamodule import DATAMODULES


class UsageError(ValueError):
    """A command-line value that cannot work, reported in one line."""


def integer(text: str) -> int:
    """An int flag that also takes the authors' float spelling ("256.0"), which their parser produced."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


# Flags of the authors' parser that no part of this project reads: they had no effect there either.
NO_EFFECT = ("isTrain", "start_epoch")
# What only training reads; test.py (and train.py --test) accepts these and names them as unused.
TRAINING_ONLY = ("save_step", "n_epochs", "batch_size", "lr", "b1", "b2", "lambda_sm", "hard_topk_ratio",
                 "hard_decay1_topk_ratio", "hard_decay2_topk_ratio", "hard_decay3_topk_ratio", "no_pretrained",
                 "resume", "reset_optimizer", "global_negatives", "max_time", "lr_schedule", "lr_warmup", "loss")
# What only testing reads; train.py names these as unused.
TESTING_ONLY = ("save_descriptors", "match_radius")


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The one parser of train.py and test.py: every flag of the authors' parser, each dataset's, then this
    project's.

    Both entry points accept every flag, as the authors' single entry point did, so their scripts run
    unchanged against either; each names the flags it was given but does not use (`unused_options`).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    authors = parser.add_argument_group("the authors' flags (same names and defaults)")
    add = authors.add_argument
    add("--results_dir", "-o", default="./RESULTS", help="every run writes one folder under here")
    add("--name", default="", help="run folder name (default: dataset and time); never overwrites a folder")
    add("--seed", type=int, default=10)
    add("--gpu_ids", "--gpu", dest="gpu_ids", default="0", help='GPU ids: "0", "0,1" (DDP); "-1" for the CPU')
    add("--isTrain", default=True, action="store_true", help="accepted for the authors' scripts; no effect")
    add("--start_epoch", type=int, default=0,
        help="accepted for the authors' scripts; no effect (a continued checkpoint gives the epoch)")
    add("--debug", action="store_true", help="full tracebacks; training stops each epoch after 42 batches")
    add("--test", action="store_true", help="train.py: evaluate --checkpoint exactly as test.py does")
    add("--save_step", type=int, default=10, help="training: also keep a checkpoint every this many epochs")
    add("--checkpoint", default=None, help="published weights or this project's .ckpt")
    add("--n_epochs", type=int, default=200, help="training: total number of epochs, continued ones included")
    add("--batch_size", type=int, default=32, help="training batch")
    add("--batch_size_val", type=int, default=32, help="evaluation batch")
    add("--lr", type=float, default=0.0001, help="adam: learning rate")
    add("--b1", type=float, default=0.5, help="adam: decay of first order momentum of gradient")
    add("--b2", type=float, default=0.999, help="adam: decay of second order momentum of gradient")
    add("--lambda_sm", type=int, default=10, help="loss weight for soft margin")
    add("--hard_topk_ratio", type=float, default=1.0, help="hard negative ratio, epochs 0-20")
    add("--hard_decay1_topk_ratio", type=float, default=0.1, help="hard negative ratio, epochs 21-40")
    add("--hard_decay2_topk_ratio", type=float, default=0.05, help="hard negative ratio, epochs 41-60")
    add("--hard_decay3_topk_ratio", type=float, default=0.01, help="hard negative ratio, after epoch 60")
    add_model_flags(parser, "limited field of view: keep this many degrees of each panorama")
    for datamodule in DATAMODULES.values():  # each dataset's own flags, the authors' names where they had them
        datamodule.add_flags(parser.add_argument_group(f"{datamodule.name} (the authors' names)").add_argument)

    add = parser.add_argument_group("this project's flags").add_argument
    add("--num_workers", type=int, default=None,
        help="data-loading processes (default: CPU count, at most 8; none with --cache_dir)")
    add("--cache_dir", default=None, metavar="DIR",
        help="decode every image once into memory-mapped arrays in DIR (rebuilt when the images change); "
             "later epochs and runs read those")
    add("--precision", default="32",
        help="Lightning precision: 32, bf16-mixed, 16-mixed; auto: bf16-mixed where the GPU or CPU runs bf16 fast "
             "(CPU: AVX512-BF16 or AMX), else 32")
    add("--max_time", type=float, default=None, metavar="MINUTES",
        help="training: stop after this many minutes in all (a resumed run counts its earlier time), "
             "then as at the last epoch")
    add("--cpu_procs", type=int, default=1, help="with --gpu -1: DDP over this many CPU processes (gloo)")
    add("--num_nodes", type=int, default=1,
        help="machines of the job (torchrun or srun start the processes); --gpu / --cpu_procs name each one's")
    add("--orientation_noise", type=float, default=0.0,
        help="unknown orientation: turn each panorama by a random angle in [0, this) degrees before the cut; "
             "360: unknown. Fixed per image by --seed in evaluation")
    add("--deterministic", action="store_true", help="deterministic kernels; off lets cuDNN pick the fastest")
    add("--channels_last", action="store_true", help="GPU: channels-last memory format for the convolutions")
    add("--compile", action="store_true",
        help="torch.compile the network: faster steps on a GPU after a first step of minutes")
    add("--no_pretrained", action="store_true", help="training: from scratch instead of ImageNet weights")
    add("--lr_schedule", choices=("constant", "cosine"), default="constant",
        help="training: the paper's constant --lr, or a warm-up then cosine decay to 0 over the run (its epochs "
             "or its --max_time, whichever ends first)")
    add("--lr_warmup", type=float, default=0.05, metavar="FRACTION",
        help="with --lr_schedule cosine: the share of the run spent warming up")
    add("--loss", default="triplet",
        help="training: a name in model/loss.py's LOSSES (triplet: the paper's, with hard-negative mining)")
    add("--global_negatives", action="store_true",
        help="training under DDP: hard negatives from the batches of all devices, not each device's own")
    add("--resume", default=None, metavar="RUN_DIR",
        help="training: continue the run in this folder from its last.ckpt, with its own options")
    add("--reset_optimizer", action="store_true",
        help="training from a published checkpoint: a fresh Adam, as the authors' code does, instead of its state")
    add("--save_descriptors", default=None, metavar="PATH",
        help="testing: write the sat and grd descriptors (dataset order) and the ids to this .npz")
    return parser


def add_model_flags(parser: argparse.ArgumentParser, fov_help: str) -> None:
    """The flags that describe the network (`ModelConfig`), in a group of their own, for every entry point."""
    add = parser.add_argument_group(
        "the model (each defaults to the checkpoint's; the sizes and --sa_num are the authors' flags)").add_argument
    add("--backbone", default="resnet34",
        help="feature extractor of both branches, a name in model/backbone.py's BACKBONES (resnet34: the paper's)")
    add("--sat_size_h", type=integer, default=256, help="aerial image height")
    add("--sat_size_w", type=integer, default=256, help="aerial image width")
    add("--grd_size_h", type=integer, default=128, help="ground panorama height")
    add("--grd_size_w", type=integer, default=512, help="ground panorama width")
    add("--sa_num", type=integer, default=8, help="number of spatial-aware attention maps")
    add("--no_fc", action="store_true", help="the paper's ablation: max-pooled map as the only attention map")
    add("--fov", type=float, default=360.0, help=f"{fov_help} (the ground head is sized for it)")


_NOT_GIVEN = object()


def parse_options(
    parser: argparse.ArgumentParser, argv: list[str] | None = None
) -> tuple[argparse.Namespace, set[str]]:
    """The parsed options, and the names (dests) of those the command line gave, whatever their value.

    A checkpoint or a continued run fills in what the command line left out, so "given" must be told
    apart from "equal to the default".
    """
    opt = parser.parse_args(argv)
    probe = argparse.Namespace(**{action.dest: _NOT_GIVEN for action in parser._actions
                                  if action.dest != argparse.SUPPRESS})
    parser.parse_args(argv, namespace=probe)  # argparse fills in defaults only for names the namespace lacks
    return opt, {name for name, value in vars(probe).items() if value is not _NOT_GIVEN}


def with_options(opt: argparse.Namespace, **changes: object) -> argparse.Namespace:
    """A copy of `opt` with `changes`: the options change by value, where the entry point can be seen doing it,
    never in place inside a helper."""
    unknown = [name for name in changes if not hasattr(opt, name)]
    if unknown:
        raise AttributeError(f"no option {unknown[0]!r} to change")
    return argparse.Namespace(**{**vars(opt), **changes})


def flag_text(name: str, value: object) -> str:
    """How a value reads on the command line: `--sa_num 8`, `--no_fc`, `no --no_fc`, `no --cache_dir` (None)."""
    if value is None or isinstance(value, bool):
        return f"--{name}" if value else f"no --{name}"
    return f"--{name} {value}"


def unused_options(opt: argparse.Namespace, given: set[str], unused: tuple[str, ...]) -> str | None:
    """One line naming the given flags this entry point does not use, or None."""
    names = [flag_text(name, getattr(opt, name)) for name in (*NO_EFFECT, *unused) if name in given]
    return f"accepted but unused here: {', '.join(names)}" if names else None


def check_field_of_view(fov: float, orientation_noise: float = 0.0) -> None:
    """--fov and --orientation_noise must be angles of the circle, in one line otherwise."""
    if not 0 < fov <= 360:
        raise UsageError(f"--fov {fov:g}: expected degrees in (0, 360]")
    if not 0 <= orientation_noise <= 360:
        raise UsageError(f"--orientation_noise {orientation_noise:g}: expected degrees in [0, 360]")


def describe_options(opt: argparse.Namespace) -> str:
    width = max(len(k) for k in vars(opt))
    lines = [f"{k:>{width}}: {v}" for k, v in sorted(vars(opt).items())]
    rule = "-" * 43
    return "\n".join([f"{' Options ':-^43}", *lines, rule])
