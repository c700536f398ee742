"""The check before training: every bad image found, none decoded twice while unchanged."""

import os

import cv2
import numpy as np

from utils.image_check import (
    RECORD_DIR_ENV,
    find_bad_images,
    image_problem,
    read_record,
    record_path,
    write_record,
)


def write(path, suffix: str, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(suffix, image)
    assert ok
    path.write_bytes(encoded.tobytes())
    return encoded.tobytes()


def test_whole_images_pass_and_each_kind_of_damage_is_named(tmp_path):
    jpeg, png = write(tmp_path / "a.jpg", ".jpg"), write(tmp_path / "b.png", ".png")
    assert image_problem(str(tmp_path / "a.jpg")) is None and image_problem(str(tmp_path / "b.png")) is None
    cases = {
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated: the JPEG has no end-of-image marker"),
        "cut.png": (png[:-20], "truncated: the PNG has no IEND chunk"),
        "empty.jpg": (b"", "empty (0 bytes)"),
        "text.jpg": (b"<html>not found</html>", "not a decodable image"),
        "._a.jpg": (b"\x00\x05\x16\x07" + bytes(200), "not a decodable image"),  # macOS metadata beside a.jpg
    }
    for name, (data, problem) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert image_problem(str(tmp_path / name)) == problem, name
    assert image_problem(str(tmp_path / "missing.jpg")).startswith("cannot be read")


def test_all_bad_images_come_back_in_order_and_good_ones_are_recorded_until_they_change(tmp_path, monkeypatch):
    paths = []
    for number in range(6):
        path = tmp_path / f"{number}.jpg"
        write(path, ".jpg", seed=number)
        paths.append(str(path))
    (tmp_path / "1.jpg").write_bytes(b"")
    (tmp_path / "4.jpg").write_bytes((tmp_path / "4.jpg").read_bytes()[:300])
    record = tmp_path / "checks" / "record.json"
    bad, good = find_bad_images([*paths, paths[0]], workers=2)
    assert [path for path, _ in bad] == [paths[1], paths[4]]
    assert sorted(good) == sorted(paths[i] for i in (0, 2, 3, 5))
    assert write_record(record, good) and read_record(record) == good

    decoded = []
    original = image_problem

    def counting(path):
        decoded.append(path)
        return original(path)

    monkeypatch.setattr("utils.image_check.image_problem", counting)
    assert find_bad_images(paths, workers=2, known=read_record(record)) == (bad, {})
    assert sorted(decoded) == sorted([paths[1], paths[4]])  # the good ones were not decoded again
    os.utime(paths[2], ns=(0, 0))  # touched: checked again
    decoded.clear()
    find_bad_images(paths, workers=1, known=read_record(record))
    assert sorted(decoded) == sorted([paths[1], paths[2], paths[4]])


def test_the_record_is_one_file_per_dataset_folder_and_a_damaged_one_counts_as_empty(tmp_path, monkeypatch):
    monkeypatch.setenv(RECORD_DIR_ENV, str(tmp_path / "records"))
    cvusa = record_path([str(tmp_path / "CVUSA" / "sat" / "1.jpg"), str(tmp_path / "CVUSA" / "grd" / "1.png")])
    assert cvusa.parent == tmp_path / "records" and cvusa.name.startswith("CVUSA-")
    assert record_path([str(tmp_path / "CVACT" / "sat" / "a.jpg")]) != cvusa
    monkeypatch.delenv(RECORD_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert record_path([str(tmp_path / "x.jpg")]).parent == tmp_path / "cache" / "cvgl" / "checked-images"

    cvusa.parent.mkdir(parents=True)
    cvusa.write_text('{"half a rec')
    assert read_record(cvusa) == {}
    assert write_record(cvusa, {"/a.jpg": (3, 4)}) and read_record(cvusa) == {"/a.jpg": (3, 4)}
    assert write_record(cvusa, {"/b.jpg": (5, 6)}) and read_record(cvusa) == {"/a.jpg": (3, 4), "/b.jpg": (5, 6)}
    assert [entry.name for entry in cvusa.parent.iterdir()] == [cvusa.name]  # no temporary file left
    assert not write_record(tmp_path / "records" / cvusa.name / "under_a_file.json", {"/c.jpg": (1, 2)})
