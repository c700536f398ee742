import pytest

from engine.options import UsageError
from engine.run_folder import make_run_dir


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


