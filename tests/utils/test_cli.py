import pytest

from utils.cli import Devices, UsageError, make_run_dir, parse_devices


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


def test_run_folders_are_never_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("CVGL_RUN_DIR", raising=False)
    first = make_run_dir(str(tmp_path), "run")
    (first / "best.ckpt").write_text("keep me")
    second = make_run_dir(str(tmp_path), "run")
    assert (first.name, second.name) == ("run", "run_1")
    assert (first / "best.ckpt").read_text() == "keep me"


def test_an_unwritable_results_dir_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="--results_dir .*file"):
        make_run_dir(str(blocker / "sub"), "run")
