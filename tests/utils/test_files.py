"""Files written whole or not at all."""

import pytest

from utils.files import write_text_atomically


def test_a_file_is_replaced_whole_and_a_failed_write_leaves_nothing_beside_it(tmp_path, monkeypatch):
    target = tmp_path / "list.txt"
    write_text_atomically(target, "first\n")
    write_text_atomically(target, "second\n")
    assert target.read_text() == "second\n" and [p.name for p in tmp_path.iterdir()] == ["list.txt"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("utils.files.os.replace", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomically(target, "third\n")
    assert target.read_text() == "second\n" and [p.name for p in tmp_path.iterdir()] == ["list.txt"]
