"""Each bad input ends train.py or test.py with exit code 2 and one line naming what is wrong, no traceback.

The cases run the scripts' `__main__` path in this process (`run_entry_point`); the check of every image
before training also runs as a subprocess, twice, to see what the second run decodes again.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.error

import pytest
import scipy.io
import torch

import test as test_script
import train
from engine.build import KNOWN_ERRORS
from tests.helpers import REPO_ROOT, offline_env, run_entry_point, run_script, tiny_run_args
from utils.image_check import RECORD_DIR_ENV


def cvusa_copy(world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(world / "CVUSA", root / "CVUSA")
    return root


def missing_root(world, tmp_path):
    return tmp_path / "nowhere", [], f"{tmp_path / 'nowhere' / 'CVUSA'} is not a directory"


def missing_split_file(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    (root / "CVUSA" / "splits" / "val-19zl.csv").unlink()
    return root, [], "val-19zl.csv does not exist"


def malformed_csv_line(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    split = root / "CVUSA" / "splits" / "train-19zl.csv"
    split.write_text(split.read_text() + "only-one-column\n")
    return root, [], "train-19zl.csv line 25: expected"


def empty_split(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    (root / "CVUSA" / "splits" / "train-19zl.csv").write_text("")
    return root, [], "lists no image pairs"


def missing_image(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    victim = sorted((root / "CVUSA" / "grd").iterdir())[0]
    victim.unlink()
    return root, [], f"are missing: {victim}"


def undecodable_image(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    victim = sorted((root / "CVUSA" / "sat").iterdir())[0]
    victim.write_bytes(b"this is not a jpeg")
    return root, [], f"1 of 74 images cannot be used: {victim} (not a decodable image); all are listed in"


def truncated_and_empty_images(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    truncated = sorted((root / "CVUSA" / "sat").iterdir())[3]  # training: it would train with a grey lower part
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    empty = sorted((root / "CVUSA" / "grd").iterdir())[-1]  # validation: it would end the run after an epoch
    empty.write_bytes(b"")
    return root, [], (f"2 of 74 images cannot be used: {truncated} (truncated: the JPEG has no end-of-image "
                      f"marker), {empty} (empty (0 bytes)); all are listed in")


def batch_larger_than_split(world, tmp_path):
    return world, ["--batch_size", "64"], "--batch_size 64: the training split has 24 pairs"


def unknown_gpu_value(world, tmp_path):
    return world, ["--gpu", "0,x"], "--gpu 0,x: expected comma-separated GPU numbers"


def unwritable_results_dir(world, tmp_path):
    (tmp_path / "a_file").write_text("")
    return world, ["--results_dir", str(tmp_path / "a_file" / "runs")], "--results_dir"


def resume_without_a_run(world, tmp_path):
    return world, ["--resume", str(tmp_path)], "no last.ckpt there"


def utf16_split(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    split = root / "CVUSA" / "splits" / "train-19zl.csv"
    split.write_bytes(split.read_text().encode("utf-16"))
    return root, [], "train-19zl.csv is UTF-16 text (what Windows PowerShell's '>' writes); save it as UTF-8"


def split_with_a_header_row(world, tmp_path):
    root = cvusa_copy(world, tmp_path)
    split = root / "CVUSA" / "splits" / "train-19zl.csv"
    split.write_text("aerial,ground,annotation\n" + split.read_text())
    return root, [], "train-19zl.csv line 1: 'aerial,ground,annotation' is a header row"


def resume_of_a_run_stopped_in_its_first_epoch(world, tmp_path):
    run = tmp_path / "early"
    run.mkdir()
    (run / "options.json").write_text("{}")
    return world, ["--resume", str(run)], (f"--resume {run}: the run stopped before its first checkpoint (during its "
                                           f"first epoch), so there is nothing to continue; start it again with the "
                                           f"options in {run / 'options.json'}")


def resume_with_a_truncated_last_checkpoint(world, tmp_path):
    run = tmp_path / "damaged"
    run.mkdir()
    torch.save({"epoch": 3, "weights": torch.zeros(100_000)}, run / "best.ckpt")
    (run / "last.ckpt").write_bytes((run / "best.ckpt").read_bytes()[:50_000])
    return world, ["--resume", str(run)], f"; --checkpoint {run / 'best.ckpt'} starts again from the best epoch"


def cache_dir_that_cannot_be_written(world, tmp_path):
    # A file where the folder should be; a read-only folder cannot be made here, where the tests run as root.
    (tmp_path / "a_file").write_text("")
    cache = tmp_path / "a_file" / "cache"
    return world, ["--cache_dir", str(cache)], f"--cache_dir {cache}: cannot write the cache of"


def both_datasets(world, tmp_path):
    return world, ["--CVACT"], "pass one of --CVUSA, --CVACT and --VIGOR, not --CVUSA and --CVACT"


def no_cpu_processes(world, tmp_path):
    return world, ["--cpu_procs", "0"], "--cpu_procs 0: expected 1 or more processes"


@pytest.mark.parametrize("case", [missing_root, missing_split_file, malformed_csv_line, empty_split, missing_image,
                                  undecodable_image, batch_larger_than_split, unknown_gpu_value,
                                  unwritable_results_dir, resume_without_a_run, both_datasets, no_cpu_processes,
                                  utf16_split, split_with_a_header_row, resume_of_a_run_stopped_in_its_first_epoch,
                                  resume_with_a_truncated_last_checkpoint, cache_dir_that_cannot_be_written,
                                  truncated_and_empty_images])
def test_train_py_answers_bad_input_with_one_line(tiny_world, tmp_path, case, monkeypatch, capsys):
    root, extra, message = case(tiny_world, tmp_path)
    args = tiny_run_args(root, tmp_path / "results", "--n_epochs", "1", "--no_pretrained", *extra)
    code = run_entry_point(train.main, KNOWN_ERRORS, args, monkeypatch)
    assert_one_line_error(code, capsys.readouterr().err, message)


def test_train_py_without_the_imagenet_weights_names_the_file_and_the_flag(tiny_world, tmp_path, monkeypatch,
                                                                           capsys):
    def download(*args, **kwargs):  # what torchvision meets without a network
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", download)
    args = tiny_run_args(tiny_world, tmp_path / "results", "--n_epochs", "1")
    code = run_entry_point(train.main, KNOWN_ERRORS, args, monkeypatch)
    weights = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    assert_one_line_error(code, capsys.readouterr().err, f"download that file to {weights} or pass --no_pretrained")


@pytest.mark.slow
def test_bad_images_are_all_named_before_the_first_step_and_good_ones_are_not_decoded_twice(tiny_world, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setenv(RECORD_DIR_ENV, str(tmp_path / "records"))
    root, _, message = truncated_and_empty_images(tiny_world, tmp_path)
    args = tiny_run_args(root, tmp_path / "results", "--n_epochs", "1", "--no_pretrained", "--num_workers", "1")
    result = run_script("train.py", *args, cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stderr, message)
    (run,) = (tmp_path / "results").glob("CVUSA_train_*")
    assert f"error: {message}" in (run / "log.txt").read_text().splitlines()[-1]  # the run's log says how it ended
    listed = [line.split("\t")[0] for line in (run / "bad_images.txt").read_text().splitlines()]
    assert len(listed) == 2 and not list(run.glob("*.ckpt"))  # stopped before any step
    assert os.listdir(tmp_path / "results") == [run.name]  # nothing else beside the run
    (record_file,) = (tmp_path / "records").iterdir()
    record = json.loads(record_file.read_text())
    assert len(record) == 72 and not set(listed) & set(record)  # the good ones, by size and modification time

    monkeypatched = (f"import sys; sys.argv[0] = {str(REPO_ROOT / 'train.py')!r}; import runpy; "
                     "import utils.image_check as c; p = c.image_problem; "
                     "c.image_problem = lambda path: (print(f'decoded {path}\\n', end=''), p(path))[1]; "
                     "runpy.run_path(sys.argv[0], run_name='__main__')")
    again = subprocess.run([sys.executable, "-c", monkeypatched, *args], capture_output=True, text=True,
                           cwd=tmp_path, env=offline_env(), timeout=600)
    calls = [line for line in again.stdout.splitlines() if line.startswith("decoded ")]
    assert sorted(calls) == sorted(f"decoded {path}" for path in listed)  # only the two bad ones again
    assert_one_line_error(again.returncode, again.stderr, message)


def test_an_image_that_fails_in_a_loader_worker_still_comes_out_as_its_one_line(fake_cvusa_root):
    from dataset.cvusa import CVUSA
    from engine.exit import _one_line

    victim = fake_cvusa_root / "sat" / "0000002.jpg"
    victim.write_bytes(b"this is not a jpeg")  # after the check before training, say, on a flaky disk
    loader = torch.utils.data.DataLoader(CVUSA(fake_cvusa_root, "train", (64, 64), (32, 128)), batch_size=2,
                                         num_workers=1)
    with pytest.raises(Exception) as raised:  # noqa: B017  (the worker's error comes wrapped)
        list(loader)
    assert _one_line(raised.value) == f"cannot read image {victim}: not a decodable image"


def act_data_without_utm(world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(world / "CVACT", root / "CVACT")
    mat = scipy.io.loadmat(root / "CVACT" / "ACT_data.mat")
    del mat["utm"]
    scipy.io.savemat(root / "CVACT" / "ACT_data.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    return root, "CVACT", "ACT_data.mat has no field utm"


def text_file_as_checkpoint(world, tmp_path):
    (tmp_path / "weights.pth").write_text("not a checkpoint")
    return world, "CVUSA", "weights.pth cannot be read"


def checkpoint_for_other_sizes(world, tmp_path):
    from model.network import CrossViewNet

    # published weights do not state their sizes (their maps and FC layers follow from the tensors)
    torch.save({"retrieval_model_dict": CrossViewNet((128, 128), (32, 128)).state_dict()}, tmp_path / "weights.pth")
    return world, "CVUSA", ("tensor sa1.w1 has shape (256, 128, 8) but the model expects (64, 32, 8); check "
                            "--sat_size_h/--sat_size_w")


@pytest.mark.parametrize("case", [act_data_without_utm, text_file_as_checkpoint, checkpoint_for_other_sizes])
def test_test_py_answers_bad_input_with_one_line(tiny_world, tmp_path, case, monkeypatch, capsys):
    root, dataset, message = case(tiny_world, tmp_path)
    if not (tmp_path / "weights.pth").exists():
        from model.network import CrossViewNet

        torch.save({"retrieval_model_dict": CrossViewNet((64, 64), (32, 128)).state_dict()}, tmp_path / "weights.pth")
    args = tiny_run_args(root, tmp_path / "results", "--checkpoint", str(tmp_path / "weights.pth"), dataset=dataset)
    code = run_entry_point(test_script.main, KNOWN_ERRORS, args, monkeypatch)
    assert_one_line_error(code, capsys.readouterr().err, message)


def assert_one_line_error(code, stderr, message):
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no --results_dir
    args = ["--CVUSA", "--data_root_cvusa", str(tmp_path / "nowhere"), "--gpu", "-1", "--no_pretrained", "--debug"]
    assert run_entry_point(train.main, KNOWN_ERRORS, args, monkeypatch) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" in stderr and stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.slow
def test_a_full_disk_is_foreseen_in_a_warning_and_met_with_one_line_and_no_partial_file(tiny_world, tmp_path,
                                                                                        monkeypatch, capsys):
    # torch reports a full disk as an error of its zip writer, after writing what fitted.
    def full_disk_save(obj, handle, *args, **kwargs):
        handle.write(b"\0" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4096 vs 4032")

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(torch, "save", full_disk_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=5 * 2**20))
    args = tiny_run_args(tiny_world, tmp_path, "--n_epochs", "2", "--no_pretrained", "--name", "full")
    code = run_entry_point(train.main, KNOWN_ERRORS, args, monkeypatch)
    run = tmp_path / "full"
    captured = capsys.readouterr()
    assert f"warning: {run} has 0.0 GB free, and this run's checkpoints need about" in captured.out
    assert_one_line_error(code, captured.err, f"no room to write {run / 'best.ckpt'}: 5 MB free on its disk after 0 MB")
    assert "free space there, then continue with --resume" in captured.err
    assert not [path.name for path in run.iterdir() if "ckpt" in path.name]  # nothing half-written left behind
    assert "no room to write" in (run / "log.txt").read_text()


def test_a_failed_write_with_room_left_keeps_its_own_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    from model.lightning import AtomicCheckpointIO

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"\0" * 100)
        raise RuntimeError("something else broke")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="something else broke"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []
