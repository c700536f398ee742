import pytest

from engine.devices import Devices, is_first_process, parse_devices
from engine.options import UsageError


@pytest.mark.parametrize(
    ("gpu", "cuda_count", "expected"),
    [
        ("0,1", 2, Devices("gpu", [0, 1], "ddp")),
        ("1", 2, Devices("gpu", [1], "auto")),
        ("0", 1, Devices("gpu", [0], "auto")),
        ("-1", 2, Devices("cpu", 1, "auto")),
    ],
)
def test_gpu_flag_names_devices_not_a_count(gpu, cuda_count, expected):
    assert parse_devices(gpu, cuda_count=cuda_count) == expected
    assert parse_devices("0,1", cuda_count=2).count == 2


def test_cpu_processes_use_ddp():
    assert parse_devices("-1", cpu_procs=2, cuda_count=0) == Devices("cpu", 2, "ddp")


def test_without_cuda_gpu_ids_fall_back_to_the_cpu_with_a_warning(capsys):
    assert parse_devices("0", cuda_count=0) == Devices("cpu", 1, "auto")
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize(("gpu", "pattern"), [("3", "GPU 3 does not exist; this machine has GPUs 0-1"),
                                              ("zero", "expected comma-separated GPU numbers")])
def test_bad_gpu_values_are_named(gpu, pattern):
    with pytest.raises(UsageError, match=pattern):
        parse_devices(gpu, cuda_count=2)


def test_nodes_make_a_single_device_a_ddp_job():
    assert parse_devices("-1", cpu_procs=1, cuda_count=0, num_nodes=2) == Devices("cpu", 1, "ddp")
    assert parse_devices("0", cuda_count=1, num_nodes=2) == Devices("gpu", [0], "ddp")
    assert parse_devices("0", cuda_count=1, num_nodes=1) == Devices("gpu", [0], "auto")
    with pytest.raises(UsageError, match="--num_nodes 0: expected 1 or more machines"):
        parse_devices("-1", num_nodes=0)


@pytest.mark.parametrize(("variables", "first"), [
    ({}, True),
    ({"LOCAL_RANK": "1"}, False),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
    ({"LOCAL_RANK": "0", "RANK": "1"}, False),  # torchrun: node 1's only process
    ({"SLURM_PROCID": "0", "LOCAL_RANK": "0"}, True),
    ({"SLURM_PROCID": "3"}, False),
])
def test_rank_zero_is_told_by_every_launcher_s_variables(monkeypatch, variables, first):
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert is_first_process() is first
