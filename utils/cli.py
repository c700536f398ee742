"""Command-line pieces shared by the entry points: the authors' flags, devices, run folders, errors."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from utils.files import write_text_atomically

RUN_DIR_ENV = "CVGL_RUN_DIR"


class UsageError(ValueError):
    """A command-line value that cannot work, reported in one line."""


class Interrupted(Exception):
    """Training stopped on a signal after saving where it stood; the job exits with 128 + the signal's number,
    as a shell reports a process ended by that signal, so `train.py && test.py` and schedulers see no success."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


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
    """The one parser of train.py and test.py: every flag of the authors' parser, then this project's.

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
    add("--CVUSA", action="store_true")
    add("--CVACT", action="store_true")
    add("--data_root_cvact", default="./data/CVACT/")
    add("--data_root_cvusa", default="./data/CVUSA/")
    add("--train_csv", default="train-19zl.csv")
    add("--val_csv", default="val-19zl.csv")
    add("--mat_list", default="ACT_data.mat")
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
    add("--eval_split", choices=("val", "test"), default="val", help="CVACT: val (CVACT_val) or test (valSetAll)")
    add("--VIGOR", action="store_true", help="VIGOR (Zhu et al. 2021) in the mode of --vigor_mode")
    add("--data_root_vigor", default="./data/VIGOR/")
    add("--vigor_mode", choices=("same", "cross"), default="same",
        help="VIGOR: same-area (all four cities) or cross-area (train NewYork, Seattle; test SanFrancisco, Chicago)")
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
    add("--match_radius", type=float, default=5.0,
        help="testing on CVACT_test: a retrieved image within this many metres of the query counts; "
             "0: one-to-one, only the query's own aerial image counts")
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


def flag_text(name: str, value: object) -> str:
    """How a value reads on the command line: `--sa_num 8`, `--no_fc`, `no --no_fc`, `no --cache_dir` (None)."""
    if value is None or isinstance(value, bool):
        return f"--{name}" if value else f"no --{name}"
    return f"--{name} {value}"


def unused_options(opt: argparse.Namespace, given: set[str], unused: tuple[str, ...]) -> str | None:
    """One line naming the given flags this entry point does not use, or None."""
    names = [flag_text(name, getattr(opt, name)) for name in (*NO_EFFECT, *unused) if name in given]
    return f"accepted but unused here: {', '.join(names)}" if names else None


@dataclass(frozen=True)
class Devices:
    accelerator: str
    devices: list[int] | int
    strategy: str

    @property
    def count(self) -> int:
        return len(self.devices) if isinstance(self.devices, list) else self.devices


def parse_devices(gpu_ids: str, cpu_procs: int = 1, cuda_count: int | None = None, num_nodes: int = 1) -> Devices:
    """`--gpu 0,1` -> those two GPUs with DDP; `--gpu 1` -> GPU number 1; `--gpu -1` -> the CPU.

    The devices are each node's; DDP as soon as the job has more than one process. Without CUDA, GPU ids
    fall back to the CPU with a warning so the scripts run on a laptop.
    """
    try:
        ids = [int(part) for part in gpu_ids.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--gpu {gpu_ids}: expected comma-separated GPU numbers such as 0 or 0,1, or -1") from None
    if cpu_procs < 1:
        raise UsageError(f"--cpu_procs {cpu_procs}: expected 1 or more processes")
    if num_nodes < 1:
        raise UsageError(f"--num_nodes {num_nodes}: expected 1 or more machines")
    gpus = [i for i in ids if i >= 0]
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus and cuda_count == 0:
        print(f"warning: --gpu {gpu_ids}: CUDA is not available, running on the CPU", file=sys.stderr)
        gpus = []
    absent = [i for i in gpus if i >= cuda_count]
    if absent:
        raise UsageError(f"--gpu {gpu_ids}: GPU {absent[0]} does not exist; this machine has GPUs 0-{cuda_count - 1}")
    if gpus:
        return Devices("gpu", gpus, "ddp" if len(gpus) * num_nodes > 1 else "auto")
    return Devices("cpu", cpu_procs, "ddp" if cpu_procs * num_nodes > 1 else "auto")


def is_first_process() -> bool:
    """Whether this is rank 0 of the job, by what torchrun, srun or Lightning's own launcher put in the environment."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return os.environ[name] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def check_field_of_view(fov: float, orientation_noise: float = 0.0) -> None:
    """--fov and --orientation_noise must be angles of the circle, in one line otherwise."""
    if not 0 < fov <= 360:
        raise UsageError(f"--fov {fov:g}: expected degrees in (0, 360]")
    if not 0 <= orientation_noise <= 360:
        raise UsageError(f"--orientation_noise {orientation_noise:g}: expected degrees in [0, 360]")


def make_run_dir(results_dir: str, name: str) -> Path:
    """A new folder for this run; an existing name gets a numbered suffix instead of being reused.

    DDP re-launches this script once per extra process; those processes find the folder in the
    environment instead of making their own.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0" and RUN_DIR_ENV in os.environ:
        return Path(os.environ[RUN_DIR_ENV])
    base = Path(results_dir) / name
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--results_dir {results_dir}: cannot create it ({exc.strerror})") from None
    for attempt in range(10_000):
        run_dir = base if attempt == 0 else base.with_name(f"{base.name}_{attempt}")
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"--results_dir {results_dir}: cannot write there ({exc.strerror})") from None
    if not os.access(run_dir, os.W_OK):
        raise UsageError(f"--results_dir {results_dir}: folder {run_dir} is not writable")
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def default_run_name(prefix: str) -> str:
    return f"{prefix}_{time.strftime('%Y%m%d-%H%M%S')}"


def write_json_atomically(path: Path, data: dict) -> None:
    """Readers never see half a file: write beside it, then rename over it."""
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


# How a collective fails when another process of the job died: gloo's broken connection, NCCL's backend error.
PEER_FAILURES = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing")


def run_main(main: Callable[[list[str] | None], int], known_errors: tuple[type[BaseException], ...]) -> None:
    """Run `main`; a user's mistake prints one line and exits 2, with the traceback only under --debug.

    In a job of several processes, the process that meets the mistake prints its line and leaves at once,
    so that the others are not kept waiting in a collective; they see their connection break and leave
    with the same code and nothing to print, so the job ends with one line. A mistake met before the
    processes joined (a flag, a checkpoint, the data's layout) is met by all of them: rank 0 prints it.
    """
    try:
        sys.exit(main(None))
    except Interrupted as exc:
        if is_first_process():
            print(exc, file=sys.stderr)
        _leave(exc.exit_code)
    except known_errors as exc:
        if "--debug" in sys.argv:
            traceback.print_exc()
        if is_first_process() or _joined_the_job():  # before joining, every process meets the same mistake
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            _to_run_log(f"error: {_one_line(exc)}")
        _leave(2)
    except Exception as exc:
        if not (_in_distributed_job() and _a_peer_failed(exc)) or "--debug" in sys.argv:
            raise
        _leave(2)


def _to_run_log(message: str) -> None:
    """The line into the run folder's log.txt too, where one was set up (the console has it already)."""
    record = logging.LogRecord("cvgl", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger("cvgl").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _joined_the_job() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _in_distributed_job() -> bool:
    return _joined_the_job() or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _a_peer_failed(exc: BaseException) -> bool:
    import torch.distributed as dist

    return isinstance(exc, dist.DistBackendError) or any(failure in str(exc) for failure in PEER_FAILURES)


def _leave(code: int) -> None:
    """sys.exit, except in a distributed job: there teardown could wait on the collectives of dead peers."""
    if not _in_distributed_job():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _one_line(exc: BaseException) -> str:
    """The error's own message, also when a DataLoader worker wrapped it in the worker's traceback."""
    message = str(exc).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return message


class _HeldForTheRunFolder(logging.Handler):
    """Keeps the messages logged before the run folder exists (the data check's, the cache's)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# Loggers whose messages go to log.txt: ours, Lightning's (device lines, tips, the model summary) and Python's
# warnings. Only ours reaches the console, and of ours not what is logged with extra=FILE_ONLY.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric")
RUN_LOGGERS = ("cvgl", *LIGHTNING_LOGGERS, "py.warnings")
FILE_ONLY = {"file_only": True}


def _console(verbose: bool) -> logging.Handler:
    """Standard output for this project's messages; with `verbose` (--debug) the file-only ones too."""
    console = logging.StreamHandler(sys.stdout)
    if not verbose:
        console.addFilter(lambda record: not getattr(record, "file_only", False))
    return console


def start_logging(verbose: bool = False) -> logging.Logger:
    """Messages to the console from the start of a run, kept until `setup_logging` writes them to log.txt too.

    Quiet unless `verbose` (--debug): the console gets the run folder, the epochs, the figures and the errors;
    Lightning's lines and Python's warnings are kept for log.txt only.
    """
    if not verbose:
        logging.captureWarnings(True)
        for lightning in map(logging.getLogger, LIGHTNING_LOGGERS):
            for handler in [h for h in lightning.handlers if not getattr(h, "_cvgl", False)]:
                lightning.removeHandler(handler)  # Lightning's own console handler
    held = {name: [_HeldForTheRunFolder()] for name in RUN_LOGGERS}
    return _install({**held, "cvgl": [_console(verbose), *held["cvgl"]]})


def setup_logging(run_dir: Path, verbose: bool = False) -> logging.Logger:
    """Messages to `run_dir/log.txt`, Lightning's and the warnings included, and ours to the console too;
    log.txt begins with what was logged since `start_logging`.

    Replaces the handlers of an earlier call, so a second run in the same process logs only to its own folder.
    """
    file_handler = logging.FileHandler(run_dir / "log.txt")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    held = sorted((record for name in RUN_LOGGERS for handler in logging.getLogger(name).handlers
                   if isinstance(handler, _HeldForTheRunFolder) for record in handler.records),
                  key=lambda record: record.created)
    log = _install({name: [file_handler] for name in RUN_LOGGERS} | {"cvgl": [file_handler, _console(verbose)]})
    for record in held:
        file_handler.handle(record)
    return log


def _install(handlers_of: dict[str, list[logging.Handler]]) -> logging.Logger:
    for name, handlers in handlers_of.items():
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_cvgl", False)]:
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            handler._cvgl = True
            logger.addHandler(handler)
    for name in ("cvgl", "py.warnings"):
        logging.getLogger(name).propagate = False
    log = logging.getLogger("cvgl")
    log.setLevel(logging.INFO)
    return log


def describe_options(opt: argparse.Namespace) -> str:
    width = max(len(k) for k in vars(opt))
    lines = [f"{k:>{width}}: {v}" for k, v in sorted(vars(opt).items())]
    rule = "-" * 43
    return "\n".join([f"{' Options ':-^43}", *lines, rule])
