import pytest

from utils.cli import (
    TESTING_ONLY,
    TRAINING_ONLY,
    Devices,
    UsageError,
    build_parser,
    is_first_process,
    make_run_dir,
    parse_devices,
    parse_options,
    unused_options,
)


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


def test_the_authors_float_sizes_are_accepted_as_whole_numbers():
    opt = build_parser().parse_args(["--sat_size_h", "256.0", "--sa_num", "8"])
    assert (opt.sat_size_h, opt.sa_num) == (256, 8) and isinstance(opt.sat_size_h, int)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--sa_num", "7.5"])


def test_every_flag_of_the_authors_parser_is_accepted():
    authors = ["--results_dir", "r", "-o", "r", "--name", "n", "--seed", "1", "--gpu_ids", "0", "--isTrain",
               "--start_epoch", "3", "--debug", "--test", "--CVUSA", "--data_root_cvact", "a", "--data_root_cvusa",
               "u", "--train_csv", "t.csv", "--val_csv", "v.csv", "--mat_list", "m.mat", "--save_step", "5",
               "--checkpoint", "c.pth", "--sat_size_h", "256", "--sat_size_w", "256", "--grd_size_h", "128",
               "--grd_size_w", "512", "--sa_num", "8", "--n_epochs", "300", "--batch_size", "32",
               "--batch_size_val", "32", "--lr", "0.0001", "--b1", "0.5", "--b2", "0.999", "--lambda_sm", "10",
               "--hard_topk_ratio", "1.0", "--hard_decay1_topk_ratio", "0.1", "--hard_decay2_topk_ratio", "0.05",
               "--hard_decay3_topk_ratio", "0.01"]
    opt, given = parse_options(build_parser(), authors)
    assert opt.test and opt.start_epoch == 3 and opt.n_epochs == 300
    assert "gpu_ids" in given and "sa_num" in given and "no_fc" not in given and "precision" not in given


def test_given_options_are_told_apart_from_defaults_of_the_same_value():
    opt, given = parse_options(build_parser(), ["--sa_num", "8", "--gpu", "-1"])
    assert given == {"sa_num", "gpu_ids"} and opt.sa_num == 8 and opt.sat_size_h == 256
    assert unused_options(opt, given, TRAINING_ONLY) is None
    opt, given = parse_options(build_parser(), ["--n_epochs", "300", "--start_epoch", "2", "--match_radius", "0"])
    assert unused_options(opt, given, TRAINING_ONLY) == "accepted but unused here: --start_epoch 2, --n_epochs 300"
    assert unused_options(opt, given, TESTING_ONLY) == "accepted but unused here: --start_epoch 2, --match_radius 0.0"


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
