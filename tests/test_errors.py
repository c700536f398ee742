"""Each bad input ends train.py or test.py with exit code 2 and one line naming what is wrong, no traceback."""

import shutil

import pytest
import scipy.io
import torch

from tests.helpers import run_script, tiny_run_args


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
    return root, ["--num_workers", "1"], f"cannot read image {victim}: not a decodable image"


def batch_larger_than_split(world, tmp_path):
    return world, ["--batch_size", "64"], "--batch_size 64: the training split has 24 pairs"


def unknown_gpu_value(world, tmp_path):
    return world, ["--gpu", "0,x"], "--gpu 0,x: expected comma-separated GPU numbers"


def unwritable_results_dir(world, tmp_path):
    (tmp_path / "a_file").write_text("")
    return world, ["--results_dir", str(tmp_path / "a_file" / "runs")], "--results_dir"


def resume_without_a_run(world, tmp_path):
    return world, ["--resume", str(tmp_path)], "no last.ckpt there"


@pytest.mark.parametrize("case", [missing_root, missing_split_file, malformed_csv_line, empty_split, missing_image,
                                  undecodable_image, batch_larger_than_split, unknown_gpu_value,
                                  unwritable_results_dir, resume_without_a_run])
def test_train_py_answers_bad_input_with_one_line(tiny_world, tmp_path, case):
    root, extra, message = case(tiny_world, tmp_path)
    args = tiny_run_args(root, tmp_path / "results", "--n_epochs", "1", "--no_pretrained", *extra)
    assert_one_line_error(run_script("train.py", *args), message)


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
def test_test_py_answers_bad_input_with_one_line(tiny_world, tmp_path, case):
    root, dataset, message = case(tiny_world, tmp_path)
    if not (tmp_path / "weights.pth").exists():
        from model.network import CrossViewNet

        torch.save({"retrieval_model_dict": CrossViewNet((64, 64), (32, 128)).state_dict()}, tmp_path / "weights.pth")
    args = tiny_run_args(root, tmp_path / "results", "--checkpoint", str(tmp_path / "weights.pth"), dataset=dataset)
    assert_one_line_error(run_script("test.py", *args), message)


def assert_one_line_error(result, message):
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


def test_debug_shows_the_traceback(tmp_path):
    result = run_script("train.py", "--CVUSA", "--data_root_cvusa", str(tmp_path / "nowhere"), "--gpu", "-1",
                        "--no_pretrained", "--debug")
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
