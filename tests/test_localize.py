import json
import os
import re
import shutil

import cv2
import numpy as np
import pytest

import localize
import test as test_script
from dataset.cvact import CVACT
from dataset.cvusa import CVUSA
from dataset.errors import DatasetError
from engine.options import UsageError
from tests.helpers import TINY_SIZES, run_entry_point, tiny_run_args
from tests.utils.test_figures import assert_readable_png
from utils.checkpoint import CheckpointError
from utils.geo import haversine_m
from utils.images import ImageReadError
from utils.orthophoto import OrthophotoError

pytestmark = pytest.mark.slow  # trains, or starts processes: the full suite only (README: Development)

SIZES = {"sat_size": (64, 64), "grd_size": (32, 128)}
MATCH_LINE = re.compile(r"^\s+(\d+)\s+(-?\d+\.\d+)\s+(\S+)(.*)$")


def printed_matches(output):
    """{panorama path: [(id, rest of the line), ...] in the printed order} from localize.py's output."""
    matches, current = {}, None
    for line in output.splitlines():
        if ": top " in line and line.endswith("aerial images"):
            current = line.split(": top ")[0]
            matches[current] = []
        elif current is not None and (found := MATCH_LINE.match(line)):
            matches[current].append((found.group(3), found.group(4)))
    return matches


@pytest.fixture
def val_split(tiny_world):
    return CVUSA(tiny_world / "CVUSA", "val", **SIZES)


@pytest.fixture
def aerial_dir(val_split, tmp_path):
    """The validation split's aerial images alone in a folder: the gallery test.py ranks against."""
    folder = tmp_path / "aerial"
    folder.mkdir()
    for path in val_split.sat_paths:
        shutil.copy(path, folder)
    return folder


def localize_args(checkpoint, *extra):
    return ["--checkpoint", str(checkpoint), *TINY_SIZES, "--gpu", "-1", "--num_workers", "0", *extra]


def test_ranks_are_those_of_the_descriptors_test_py_computes(tiny_world, tiny_trained_run, val_split, aerial_dir,
                                                             tmp_path, capsys):
    checkpoint = tiny_trained_run / "best.ckpt"
    saved = tmp_path / "descriptors.npz"
    args = tiny_run_args(tiny_world, tmp_path / "runs", "--checkpoint", str(checkpoint), "--save_descriptors",
                         str(saved))
    assert test_script.main(args) == 0
    capsys.readouterr()
    index = tmp_path / "gallery"
    assert localize.main(localize_args(checkpoint, "--aerial_dir", str(aerial_dir), "--index", str(index),
                                       "--top_k", "13", *val_split.grd_paths)) == 0

    printed = printed_matches(capsys.readouterr().out)
    arrays = np.load(saved)
    similarities = arrays["grd"] @ arrays["sat"].T
    ranks = []
    for query, (pair_id, path) in enumerate(zip(val_split.ids, val_split.grd_paths, strict=True)):
        expected = 1 + int(np.sum(similarities[query] > similarities[query, query]))
        listed = [match_id for match_id, _ in printed[path]]
        assert len(listed) == 13 and listed.index(pair_id) + 1 == expected, (path, listed)
        ranks.append(expected)
    results = json.loads(next((tmp_path / "runs").glob("*/results.json")).read_text())
    assert ranks.count(1) == round(results["p2s"]["r@1"] * 13 / 100)  # rank 1 exactly where test.py counts R@1

    figure = tmp_path / "matches.png"
    assert localize.main(localize_args(checkpoint, "--index", str(index), "--figure", str(figure),
                                       *val_split.grd_paths[:2])) == 0
    assert_readable_png(figure, min_bytes=20_000)


def test_a_second_call_reuses_the_index_until_it_goes_stale(tiny_trained_run, val_split, aerial_dir, tmp_path,
                                                            capsys):
    checkpoint = tmp_path / "model.ckpt"
    shutil.copy(tiny_trained_run / "best.ckpt", checkpoint)
    index = tmp_path / "gallery"
    args = localize_args(checkpoint, "--aerial_dir", str(aerial_dir), "--index", str(index))
    assert localize.main(args) == 0
    assert f"indexed 13 aerial images of {aerial_dir} into {index}" in capsys.readouterr().out
    built = (index / "index.json").stat().st_mtime_ns
    assert np.load(index / "descriptors.npy").shape == (13, 2048)
    with np.load(index / "gallery.npz") as arrays:
        assert list(arrays["ids"]) == val_split.ids and "positions" not in arrays

    assert localize.main([*args, val_split.grd_paths[0]]) == 0
    output = capsys.readouterr().out
    assert "gallery pass skipped" in output and val_split.grd_paths[0] in printed_matches(output)
    assert localize.main(localize_args(checkpoint, "--index", str(index), val_split.grd_paths[1])) == 0
    assert "gallery pass skipped" in capsys.readouterr().out
    assert (index / "index.json").stat().st_mtime_ns == built

    later = checkpoint.stat().st_mtime + 60
    os.utime(checkpoint, (later, later))
    with pytest.raises(UsageError, match=r"gallery is stale: the checkpoint was modified .*--rebuild_index"):
        localize.main(args)
    assert localize.main([*args, "--rebuild_index"]) == 0
    assert "indexed 13 aerial images" in capsys.readouterr().out

    shutil.copy(val_split.sat_paths[0], aerial_dir / "extra.jpg")
    with pytest.raises(UsageError, match="is stale: the images in .* changed"):
        localize.main(args)


def test_a_cvact_index_file_gives_the_matches_positions(tiny_world, tiny_trained_run, tmp_path, capsys):
    val = CVACT(tiny_world / "CVACT", "val", **SIZES)
    index = tmp_path / "act"
    mat = tiny_world / "CVACT" / "ACT_data.mat"
    assert localize.main(localize_args(tiny_trained_run / "best.ckpt", "--mat", str(mat), "--mat_split", "val",
                                       "--index", str(index), "--top_k", "3", val.grd_paths[0])) == 0
    output = capsys.readouterr().out
    assert "easting" in output and "northing" in output
    matches = printed_matches(output)[val.grd_paths[0]]
    assert len(matches) == 3
    for match_id, rest in matches:
        easting, northing = (float(value) for value in rest.split()[:2])
        np.testing.assert_allclose((easting, northing), val.utm[val.ids.index(match_id)], atol=0.01)
    with np.load(index / "gallery.npz") as arrays:
        np.testing.assert_array_equal(arrays["positions"], val.utm)
    assert "no map: the gallery's positions are not latitude and longitude" not in output  # no --out, no map


def test_user_mistakes_get_one_line(tiny_trained_run, tmp_path, monkeypatch, capsys):
    checkpoint = tiny_trained_run / "best.ckpt"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"--aerial_dir .*empty: no images \(.jpg"):
        localize.main(localize_args(checkpoint, "--aerial_dir", str(tmp_path / "empty")))
    with pytest.raises(UsageError, match="no --index given; pass --orthophoto GEOTIFF, --aerial_dir DIR or --mat"):
        localize.main(localize_args(checkpoint))
    with pytest.raises(CheckpointError, match="nothing.ckpt does not exist"):
        localize.main(localize_args(tmp_path / "nothing.ckpt", "--aerial_dir", str(tmp_path / "empty")))
    with pytest.raises(ImageReadError, match="cannot read panorama .*pano.jpg: file does not exist"):
        localize.main(localize_args(checkpoint, "--aerial_dir", str(tmp_path / "empty"), str(tmp_path / "pano.jpg")))
    (tmp_path / "gallery.npz").write_text("an index of localize.py's format 2 was one file")
    with pytest.raises(UsageError, match=r"--index .*gallery.npz: a file; expected a folder"):
        localize.main(localize_args(checkpoint, "--index", str(tmp_path / "gallery.npz")))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "index.json").write_text("not an index")
    with pytest.raises(UsageError, match="index.json is not an index manifest written by localize.py"):
        localize.main(localize_args(checkpoint, "--index", str(tmp_path / "junk")))
    with pytest.raises(UsageError, match=r"--index .*nothing_yet holds no finished index; pass --orthophoto"):
        localize.main(localize_args(checkpoint, "--index", str(tmp_path / "nothing_yet")))

    capsys.readouterr()
    code = run_entry_point(localize.main, localize.KNOWN_ERRORS,
                           localize_args(checkpoint, "--aerial_dir", str(tmp_path / "nowhere")), monkeypatch)
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --aerial_dir {tmp_path / 'nowhere'}: not a folder; expected a folder of aerial images"]


def test_a_checkpoint_of_this_project_gives_the_sizes(tiny_trained_run, val_split, aerial_dir, capsys):
    common = ["--checkpoint", str(tiny_trained_run / "best.ckpt"), "--gpu", "-1", "--num_workers", "0",
              "--aerial_dir", str(aerial_dir), "--top_k", "13", *val_split.grd_paths[:3]]
    assert localize.main(common) == 0
    without_flags = printed_matches(capsys.readouterr().out)
    assert localize.main([*common, *TINY_SIZES]) == 0
    assert without_flags == printed_matches(capsys.readouterr().out) and len(without_flags) == 3
    with pytest.raises(CheckpointError, match="check --sa_num"):
        localize.main([*common, "--sa_num", "2"])


def test_an_index_is_refused_for_another_checkpoint_source_or_rewritten_images(tiny_trained_run, aerial_dir,
                                                                              tmp_path):
    best, last, index = tiny_trained_run / "best.ckpt", tiny_trained_run / "last.ckpt", tmp_path / "gallery"
    assert localize.main(localize_args(best, "--aerial_dir", str(aerial_dir), "--index", str(index))) == 0
    with pytest.raises(UsageError, match=f"is stale: it was built with checkpoint {best}, this call uses {last}"):
        localize.main(localize_args(last, "--aerial_dir", str(aerial_dir), "--index", str(index)))
    other = shutil.copytree(aerial_dir, tmp_path / "copy")
    with pytest.raises(UsageError, match=f"is stale: it indexes {aerial_dir}, this call asks for {other}"):
        localize.main(localize_args(best, "--aerial_dir", str(other), "--index", str(index)))

    victim = sorted(aerial_dir.iterdir())[3]
    victim.write_bytes(sorted(aerial_dir.iterdir())[4].read_bytes())  # same name, another image
    later = victim.stat().st_mtime + 5
    os.utime(victim, (later, later))
    with pytest.raises(UsageError, match=re.escape(f"is stale: 1 of the images in {aerial_dir} were rewritten since "
                                                   f"it was built ({victim} first)")):
        localize.main(localize_args(best, "--aerial_dir", str(aerial_dir), "--index", str(index)))
    assert localize.main(localize_args(best, "--aerial_dir", str(aerial_dir), "--index", str(index),
                                       "--rebuild_index")) == 0
    assert localize.main(localize_args(best, "--aerial_dir", str(aerial_dir), "--index", str(index))) == 0


def test_unusable_gallery_images_stop_the_call_before_the_pass_unless_skipped_by_name(tiny_trained_run, val_split,
                                                                                     aerial_dir, tmp_path, capsys):
    checkpoint, index = tiny_trained_run / "best.ckpt", tmp_path / "gallery"
    metadata = aerial_dir / f"._{val_split.ids[0]}.jpg"  # what macOS leaves beside a copied file
    metadata.write_bytes(b"\x00\x05\x16\x07" + bytes(4000))
    truncated = aerial_dir / f"{val_split.ids[5]}.jpg"
    truncated.write_bytes(truncated.read_bytes()[:1500])
    args = localize_args(checkpoint, "--aerial_dir", str(aerial_dir), "--index", str(index))
    with pytest.raises(DatasetError, match=re.escape(
            f"2 of 14 aerial images of {aerial_dir} cannot be used: {metadata} (not a decodable image), {truncated} "
            "(truncated: the JPEG has no end-of-image marker); mend or remove them, or pass --skip_bad_images")):
        localize.main(args)
    assert not index.exists()  # stopped before anything was written

    assert localize.main([*args, "--skip_bad_images", "--top_k", "12", *val_split.grd_paths[:2]]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[:3] == [
        "skipping 2 of 14 aerial images that cannot be used:", f"  {metadata} (not a decodable image)",
        f"  {truncated} (truncated: the JPEG has no end-of-image marker)"]
    listed = [match_id for match_id, _ in printed_matches(captured.out)[val_split.grd_paths[0]]]
    assert sorted(listed) == sorted(val_split.ids[:5] + val_split.ids[6:])  # the 12 others, all indexed
    with np.load(index / "gallery.npz") as arrays:
        assert len(arrays["ids"]) == 12 and sorted(arrays["skipped"]) == sorted([str(metadata), str(truncated)])

    alone = tmp_path / "only_bad"
    alone.mkdir()
    (alone / metadata.name).write_bytes(metadata.read_bytes())
    with pytest.raises(DatasetError, match="1 of 1 aerial images of .* cannot be used"):  # nothing left to index
        localize.main(localize_args(checkpoint, "--aerial_dir", str(alone), "--skip_bad_images"))

    assert localize.main([*args, val_split.grd_paths[0]]) == 0  # the same folder again: the index serves it
    output = capsys.readouterr().out
    assert "gallery pass skipped" in output and "without the 2 unusable images skipped" in output
    assert [match_id for match_id, _ in printed_matches(output)[val_split.grd_paths[0]]] == listed[:5]


def test_onnx_graphs_localize_as_the_checkpoint_does(tiny_trained_run, val_split, aerial_dir, tmp_path, capsys):
    from export import main as export_main

    graphs = tmp_path / "graphs"
    assert export_main([str(tiny_trained_run / "best.ckpt"), str(graphs), "--format", "onnx"]) == 0
    common = ["--gpu", "-1", "--num_workers", "0", "--aerial_dir", str(aerial_dir), "--top_k", "13",
              *val_split.grd_paths]
    capsys.readouterr()
    assert localize.main(["--checkpoint", str(tiny_trained_run / "best.ckpt"), *common]) == 0
    with_torch = printed_matches(capsys.readouterr().out)
    index = tmp_path / "onnx_gallery"
    assert localize.main(["--onnx", str(graphs), "--index", str(index), *common]) == 0
    with_onnx = printed_matches(capsys.readouterr().out)
    assert len(with_onnx) == 13
    for path, matches in with_torch.items():  # the same tiles in the same order, similarities to 1e-4
        assert [match_id for match_id, _ in with_onnx[path]] == [match_id for match_id, _ in matches]
    assert localize.main(["--onnx", str(graphs), "--index", str(index), val_split.grd_paths[0], "--gpu", "-1"]) == 0
    assert "gallery pass skipped" in capsys.readouterr().out
    with pytest.raises(UsageError, match="--sa_num: the ONNX graphs in .* state their own sizes"):
        localize.main(["--onnx", str(graphs), "--index", str(index), "--sa_num", "4"])
    with pytest.raises(UsageError, match="is stale: it was built with the ONNX graph .*aerial.onnx, this call uses "
                                         "the checkpoint .*best.ckpt"):
        localize.main(["--checkpoint", str(tiny_trained_run / "best.ckpt"), "--index", str(index), "--gpu", "-1"])


def orthophoto_args(world, *extra):
    return ["--orthophoto", str(world / "orthophoto" / "map.tif"), "--tile_m", "synthetic", *extra]


def test_an_orthophoto_gives_positions_a_confidence_files_and_a_map(tiny_world, tiny_trained_run, val_split,
                                                                     tmp_path, capsys):
    out, index = tmp_path / "out", tmp_path / "city"
    truth_csv = tiny_world / "orthophoto" / "panoramas.csv"
    panoramas = val_split.grd_paths[:3]
    assert localize.main(localize_args(tiny_trained_run / "best.ckpt", *orthophoto_args(
        tiny_world, "--index", str(index), "--truth", str(truth_csv), "--out", str(out), "--top_k", "4",
        "--figure", str(out / "matches.png"), *panoramas))) == 0
    output = capsys.readouterr().out
    assert re.search(r"cut \d+ tiles of 80 m every 40 m from .*map.tif \(64 px each at 1.25 m/px", output)
    assert "--index_type auto: exact for" in output

    answers = json.loads((out / "answers.json").read_text())
    assert answers["position"] == ["latitude", "longitude"] and len(answers["answers"]) == 3
    truth = {row.split(",")[0]: [float(v) for v in row.split(",")[1:3]]
             for row in truth_csv.read_text().splitlines()[1:]}
    with np.load(index / "gallery.npz") as arrays:
        origins = arrays["grid_origins"]
    for path, record in zip(panoramas, answers["answers"], strict=True):
        assert record["panorama"] == path and len(record["matches"]) == 4
        scores = [m["similarity"] for m in record["matches"]]
        assert scores == sorted(scores, reverse=True)
        top = record["matches"][0]
        row, col = (int(v[1:]) for v in top["id"].split("_"))
        assert [row, col] in origins.tolist()
        expected_truth = truth[os.path.basename(path)]
        assert [record["truth"]["latitude"], record["truth"]["longitude"]] == pytest.approx(expected_truth)
        estimate = np.array([[record["estimate"]["latitude"], record["estimate"]["longitude"]]])
        assert record["error_m"] == pytest.approx(float(haversine_m(estimate, np.array([expected_truth]))[0]))
        assert estimate.tolist() == [[top["latitude"], top["longitude"]]]  # the default: the best tile's centre
        assert record["confidence"] >= 0.0
    answer_rows = (out / "answers.csv").read_text().splitlines()
    assert answer_rows[0] == "panorama,latitude,longitude,confidence,top1_id,top1_similarity,error_m"
    assert len(answer_rows) == 4 and len((out / "matches.csv").read_text().splitlines()) == 1 + 3 * 4
    assert (out / "map.html").stat().st_size > 100_000  # the page itself is checked in a browser in test_map_page
    assert_readable_png(out / "coverage.png", min_bytes=10_000)
    assert_readable_png(out / "matches.png", min_bytes=10_000)

    assert localize.main(localize_args(tiny_trained_run / "best.ckpt", *orthophoto_args(
        tiny_world, "--index", str(index), "--top_k", "4", "--estimate", "vote", "--out", str(tmp_path / "vote"),
        panoramas[0]))) == 0
    assert "gallery pass skipped" in capsys.readouterr().out
    voted = json.loads((tmp_path / "vote" / "answers.json").read_text())["answers"][0]
    best = voted["matches"][0]
    estimate = np.array([[voted["estimate"]["latitude"], voted["estimate"]["longitude"]]])
    assert haversine_m(estimate, np.array([[best["latitude"], best["longitude"]]]))[0] <= 40.0 + 1e-6  # half a tile
    with pytest.raises(UsageError, match="is stale: it was built with tile_m 80.0, this call uses 60.0"):
        localize.main(localize_args(tiny_trained_run / "best.ckpt", "--orthophoto",
                                    str(tiny_world / "orthophoto" / "map.tif"), "--tile_m", "60", "--index",
                                    str(index)))


def test_a_killed_build_continues_where_it_stopped(tiny_world, tiny_trained_run, tmp_path, monkeypatch, capsys):
    from engine import gallery_index

    args = localize_args(tiny_trained_run / "best.ckpt", *orthophoto_args(tiny_world, "--batch_size", "16"))
    real_append, calls = gallery_index.DescriptorWriter.append, []

    def append_then_die(self, descriptors):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a SIGINT or a node going away would, between two batches
        calls.append(len(descriptors))
        real_append(self, descriptors)

    monkeypatch.setattr(gallery_index.DescriptorWriter, "append", append_then_die)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        localize.main([*args, "--index", str(killed)])
    assert not (killed / "index.json").exists() and not (killed / "descriptors.npy").exists()
    assert json.loads((killed / "progress.json").read_text())["done"] == 32
    monkeypatch.setattr(gallery_index.DescriptorWriter, "append", real_append)
    capsys.readouterr()

    assert localize.main([*args, "--index", str(killed)]) == 0
    assert re.search(r"continuing the build in .*killed: 32 of \d+ descriptors already in", capsys.readouterr().out)
    assert localize.main([*args, "--index", str(tmp_path / "whole")]) == 0
    np.testing.assert_array_equal(np.load(killed / "descriptors.npy"), np.load(tmp_path / "whole" / "descriptors.npy"))
    assert sorted(p.name for p in killed.iterdir()) == ["descriptors.npy", "gallery.npz", "index.json"]


def test_a_compressed_search_is_built_from_the_stored_descriptors(tmp_path, capsys):
    from engine.gallery import FileGallery
    from engine.gallery_index import LISTING, MANIFEST
    from tests.utils.test_descriptor_index import clustered_gallery, write_all

    descriptors, queries = clustered_gallery(3000, 64, seed=5)  # as a finished exact index would hold them
    write_all(tmp_path, descriptors)
    names = [f"{k:05d}" for k in range(3000)]
    listing = FileGallery(names, [f"/aerial/{n}.jpg" for n in names], None, "/aerial", np.zeros((3000, 2), np.int64))
    np.savez(tmp_path / LISTING, **listing.arrays())
    manifest = {"format": 3, "config": {}, "gallery": {"source": "/aerial", "type": "files", "position_kind": None},
                "search": {"kind": "exact"}}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))

    index = localize.with_search_kind(tmp_path, manifest, "ivfpq")
    assert "building the ivfpq search of" in capsys.readouterr().out
    assert index.kind == "ivfpq" and (tmp_path / "ivfpq.faiss").is_file()
    assert json.loads((tmp_path / MANIFEST).read_text())["search"]["kind"] == "ivfpq"
    exact = localize.with_search_kind(tmp_path, manifest, "exact")
    rows, exact_rows = index.searcher.search(queries, 5)[1], exact.searcher.search(queries, 5)[1]
    assert np.mean(rows[:, 0] == exact_rows[:, 0]) >= 0.99
    again = localize.with_search_kind(tmp_path, json.loads((tmp_path / MANIFEST).read_text()), "auto")
    assert again.kind == "ivfpq" and "building" not in capsys.readouterr().out  # built once, kept


def test_a_gallery_too_small_to_compress_is_searched_exactly(tiny_world, tiny_trained_run, val_split, tmp_path,
                                                             capsys):
    common = localize_args(tiny_trained_run / "best.ckpt", *orthophoto_args(tiny_world, "--top_k", "5",
                                                                          *val_split.grd_paths[:3]))
    assert localize.main(common) == 0
    exact = printed_matches(capsys.readouterr().out)
    assert localize.main([*common, "--index_type", "ivfpq"]) == 0
    output = capsys.readouterr().out
    assert re.search(r"--index_type ivfpq: \d+ aerial images are too few to compress \(it takes 1,000\); "
                     "searching them exactly", output)
    assert printed_matches(output) == exact


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the GeoTIFF without a projection
def test_orthophoto_and_panorama_mistakes(tiny_world, tiny_trained_run, tmp_path, monkeypatch, capsys):
    import rasterio

    checkpoint = tiny_trained_run / "best.ckpt"
    bare = tmp_path / "bare.tif"
    with rasterio.open(tiny_world / "orthophoto" / "map.tif") as source:
        pixels = source.read()
    with rasterio.open(bare, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype="uint8") as out:
        out.write(pixels)
    code = run_entry_point(localize.main, localize.KNOWN_ERRORS,
                           localize_args(checkpoint, "--orthophoto", str(bare)), monkeypatch)
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --orthophoto {bare}: has no projection (CRS); expected a GeoTIFF with one, e.g. set with "
        "gdal_edit.py -a_srs EPSG:XXXX"]
    with pytest.raises(OrthophotoError, match=r"--tile_m 5000: a tile of \d+ pixels .* is larger than"):
        localize.main(localize_args(checkpoint, "--orthophoto", str(tiny_world / "orthophoto" / "map.tif"),
                                    "--tile_m", "5000"))
    with pytest.raises(OrthophotoError, match="--tile_m huge: expected metres above 0 or one of cvusa"):
        localize.main(localize_args(checkpoint, *orthophoto_args(tiny_world, "--tile_m", "huge")))

    photo = tmp_path / "photo.jpg"  # 4:3, as a phone's photo
    cv2.imwrite(str(photo), np.full((96, 128, 3), 120, np.uint8))
    assert localize.main(localize_args(checkpoint, *orthophoto_args(tiny_world, str(photo)))) == 0
    assert f"warning: {photo} is 128x96, narrower than 2:1: probably not a full 360-degree panorama" in \
        capsys.readouterr().err
