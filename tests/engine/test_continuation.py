import json

import pytest

from engine.continuation import continue_options, stored_options
from engine.options import UsageError, build_parser, parse_options

STORED = {"CVUSA": False, "CVACT": True, "data_root_cvact": "/data/CVACT", "sa_num": 4, "lr": 0.001, "n_epochs": 50,
          "num_workers": 2, "results_dir": "/old/results", "name": "run", "checkpoint": None, "gone_flag": 1,
          "cache_dir": None}


def continued(argv):
    opt, given = parse_options(build_parser(), argv)
    return continue_options(opt, given, STORED, "RUN/last.ckpt")


def test_the_run_s_options_fill_in_what_the_command_line_left_out():
    opt, changed = continued(["--resume", "RUN"])
    assert (opt.CVACT, opt.data_root_cvact, opt.sa_num, opt.lr, opt.n_epochs) == (True, "/data/CVACT", 4, 0.001, 50)
    assert changed == [] and not hasattr(opt, "gone_flag")
    assert (opt.resume, opt.results_dir, opt.name) == ("RUN", "./RESULTS", "")  # about this call, not the run


def test_the_epoch_count_data_roots_cache_and_devices_may_change_and_are_reported():
    opt, changed = continued(["--n_epochs", "60", "--num_workers", "0", "--data_root_cvact", "/moved", "--gpu", "1",
                              "--sa_num", "4", "--name", "other", "--cache_dir", "/fast"])
    assert (opt.n_epochs, opt.num_workers, opt.data_root_cvact, opt.gpu_ids) == (60, 0, "/moved", "1")
    assert opt.cache_dir == "/fast"
    assert changed == ["--data_root_cvact /moved (was --data_root_cvact /data/CVACT)",
                       "--n_epochs 60 (was --n_epochs 50)", "--num_workers 0 (was --num_workers 2)",
                       "--cache_dir /fast (was no --cache_dir)"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--sa_num", "8"], "--sa_num 8: the run of RUN/last.ckpt was configured with --sa_num 4; a continued run"),
    (["--lr", "0.01"], "--lr 0.01: .* with --lr 0.001;"),
    (["--CVUSA"], "--CVUSA: .* with no --CVUSA;"),
])
def test_anything_else_that_differs_is_refused_naming_both_values(argv, message):
    with pytest.raises(UsageError, match=message):
        continued(argv)


def test_options_come_from_the_checkpoint_else_from_the_folder(tmp_path):
    assert stored_options({"options": {"sa_num": 2}}, tmp_path / "last.ckpt") == {"sa_num": 2}
    assert stored_options({}, tmp_path / "last.ckpt") is None
    (tmp_path / "options.json").write_text(json.dumps({"sa_num": 3}))
    assert stored_options({}, tmp_path / "last.ckpt") == {"sa_num": 3}
    (tmp_path / "options.json").write_text("{cut sh")
    with pytest.raises(UsageError, match="options.json: cannot be read as the run's options"):
        stored_options({}, tmp_path / "last.ckpt")
