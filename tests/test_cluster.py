"""Jobs started by cluster launchers, on loopback: torchrun over two "nodes", and srun emulated by its variables."""

import json
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

import test as test_script
from tests.helpers import REPO_ROOT, SMALL_SIZES, offline_env, tiny_run_args

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_job(commands, envs, cwd, timeout=300):
    """Start every process of one job at once and wait for all of them; their CompletedProcess-like results."""
    processes = [subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for command, env in zip(commands, envs, strict=True)]
    try:
        outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    return [(process.returncode, output) for process, output in zip(processes, outputs, strict=True)]


def torchrun_two_nodes(script, args, cwd):
    port = free_port()
    commands = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                 "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port),
                 str(REPO_ROOT / script), *args, "--num_nodes", "2"] for node in (0, 1)]
    return run_job(commands, [offline_env()] * 2, cwd)


def srun_two_tasks(script, args, cwd):
    """What srun gives two tasks on one node, as Lightning's SLURMEnvironment reads it."""
    port = str(free_port())
    envs = [offline_env(SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="2", SLURM_PROCID=str(task), SLURM_LOCALID=str(task),
                        SLURM_NODEID="0", SLURM_JOB_ID="4242", SLURM_JOB_NAME="train", SLURM_NODELIST="localhost",
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for task in (0, 1)]
    commands = [[sys.executable, str(REPO_ROOT / script), *args, "--cpu_procs", "2"]] * 2
    return run_job(commands, envs, cwd)


@pytest.mark.parametrize("launcher", [torchrun_two_nodes, srun_two_tasks], ids=["torchrun", "srun"])
def test_a_job_of_two_processes_writes_one_run_and_the_single_process_figures(tiny_world, tmp_path, launcher):
    results = tmp_path / "results"
    common = tiny_run_args(tiny_world, results, *SMALL_SIZES)
    for code, output in launcher("train.py", [*common, "--n_epochs", "1", "--no_pretrained", "--name", "job"],
                                 tmp_path):
        assert code == 0, output[-3000:]
    assert sorted(p.name for p in results.iterdir()) == ["job"]
    run = results / "job"
    log = (run / "log.txt").read_text()
    assert log.count("epoch 0 validation, 13 pairs: ") == 1 and log.count("Options") == 1
    assert {"best.ckpt", "last.ckpt", "options.json", "summary.json"} <= {p.name for p in run.iterdir()}

    for code, output in launcher("test.py", [*common, "--checkpoint", str(run / "best.ckpt"), "--name", "tested"],
                                 tmp_path):
        assert code == 0, output[-3000:]
    assert sorted(p.name for p in results.iterdir()) == ["job", "results.csv", "tested"]
    assert len((results / "results.csv").read_text().splitlines()) == 2  # the header and one row
    assert test_script.main([*common, "--checkpoint", str(run / "best.ckpt"), "--name", "single"]) == 0
    job, single = (json.loads((results / name / "results.json").read_text()) for name in ("tested", "single"))
    assert (job["p2s"], job["s2p"], job["num"]) == (single["p2s"], single["s2p"], 13)


def broken_world(world, tmp_path):
    """A copy of the world whose one aerial image cannot be decoded. The check before training finds it: in
    one process's share of the images under torchrun, on rank 0 under Lightning's launcher."""
    root = tmp_path / "world"
    shutil.copytree(world / "CVUSA", root / "CVUSA")
    victim = sorted((root / "CVUSA" / "sat").iterdir())[5]
    victim.write_bytes(b"this is not a jpeg")
    return root, f"images cannot be used: {victim} (not a decodable image); all are listed in"


def lightning_two_processes(script, args, cwd):
    return run_job([[sys.executable, str(REPO_ROOT / script), *args, "--cpu_procs", "2"]], [offline_env()], cwd)


def checkpoint_that_does_not_fit(world, tmp_path):
    """A mistake every process meets before they join: only rank 0 says it."""
    from model.network import CrossViewNet

    torch.save({"retrieval_model_dict": CrossViewNet((64, 64), (32, 128), sa_num=4).state_dict()},
               tmp_path / "weights.pth")
    return world, ["--checkpoint", str(tmp_path / "weights.pth")], "tensor sa1.w1 has shape (64, 32, 4) but"


def image_in_one_shard(world, tmp_path):
    root, line = broken_world(world, tmp_path)
    return root, [], line


@pytest.mark.parametrize("launcher", [lightning_two_processes, torchrun_two_nodes], ids=["lightning", "torchrun"])
@pytest.mark.parametrize("case", [image_in_one_shard, checkpoint_that_does_not_fit])
def test_a_failure_in_one_process_ends_the_job_with_its_one_line(tiny_world, tmp_path, launcher, case):
    root, extra, line = case(tiny_world, tmp_path)
    args = tiny_run_args(root, tmp_path / "results", "--n_epochs", "1", "--no_pretrained", *SMALL_SIZES, *extra)
    started = time.monotonic()
    finished = launcher("train.py", args, tmp_path)
    assert time.monotonic() - started < 60
    output = "".join(text for _, text in finished)
    assert output.count(line) == 1, output[-3000:]
    assert "Connection closed by peer" not in output and "RuntimeError" not in output
    if launcher is lightning_two_processes:
        assert finished[0][0] == 2 and "Traceback" not in output
    else:  # both processes leave with 2; each node's torchrun reports its own in a summary and exits 1
        reported = re.findall(r"exitcode\s*: (-?\d+)", output)
        assert reported and set(reported) == {"2"} and [code for code, _ in finished] == [1, 1]
