import csv
import logging

import numpy as np
import pytest
import torch

from dataset.cvact import CVACT
from dataset.cvusa import CVUSA
from tests.utils.test_figures import assert_readable_png
from utils.evaluation import OwnPair, PositiveTile, WithinRadius, evaluate
from utils.recall import recall_at_k
from utils.report import CSV_COLUMNS, append_results_row, evaluation_retrievals, results_row, write_test_report

SIZES = {"sat_size": (64, 64), "grd_size": (32, 128)}


def noisy_descriptors(num, dim=32, noise=0.9, seed=0):
    """Ground descriptors close to their aerial pairs: some queries at rank 1, some further down."""
    generator = torch.Generator().manual_seed(seed)
    sat = torch.nn.functional.normalize(torch.randn(num, dim, generator=generator), dim=1)
    grd = torch.nn.functional.normalize(sat + noise * torch.randn(num, dim, generator=generator), dim=1)
    return {"sat": sat, "grd": grd}


def paired_evaluation(descriptors, matching=None, **labels):
    pairs = {**descriptors, **labels}
    return evaluate(pairs, pairs, matching or OwnPair())


def summary_for(dataset_name, split, num, radius=None, checkpoint="/runs/a/best.ckpt"):
    figures = {"r@1": 50.0, "r@5": 75.0, "r@10": 90.0, "r@1%": 50.0}
    return {"dataset": dataset_name, "split": split, "num": num, "checkpoint": checkpoint, "p2s": figures,
            "s2p": figures, "match_radius_m": radius, "precision": "32", "no_fc": False, "sa_num": 8,
            "sat_size": [64, 64], "grd_size": [32, 128]}


def test_the_report_draws_readable_figures_and_adds_a_table_row(tiny_world, tmp_path):
    dataset = CVUSA(tiny_world / "CVUSA", "val", **SIZES)
    evaluation = paired_evaluation(noisy_descriptors(len(dataset)))
    written = write_test_report(tmp_path, tmp_path / "results.csv", summary_for("CVUSA", "val", len(dataset)),
                                evaluation, dataset, dataset)
    assert written == {"recall_curve": tmp_path / "recall_curve.png", "retrievals": tmp_path / "retrievals.png",
                       "results_csv": tmp_path / "results.csv"}
    assert_readable_png(written["recall_curve"])
    image = assert_readable_png(written["retrievals"], min_bytes=20_000)
    assert image.shape[1] > image.shape[0]  # a panorama and six aerial columns per row
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["dataset"] == "CVUSA" and rows[0]["p2s_r@1"] == "50.0000"


def test_cvact_test_split_figures_count_neighbours_within_the_radius(tiny_world, tmp_path):
    dataset = CVACT(tiny_world / "CVACT", "test", **SIZES)
    descriptors = noisy_descriptors(len(dataset), seed=1)
    utm = torch.as_tensor(dataset.utm)
    written = write_test_report(tmp_path, tmp_path / "results.csv", summary_for("CVACT", "test", len(dataset), 5.0),
                                paired_evaluation(descriptors, WithinRadius(5.0), utm=utm), dataset, dataset)
    assert_readable_png(written["recall_curve"])
    assert_readable_png(written["retrievals"])
    distances = np.hypot(*(dataset.utm[:, None] - dataset.utm[None]).transpose(2, 0, 1))
    radius = float(np.median(distances))  # about half of the references count for each query
    evaluation = paired_evaluation(descriptors, WithinRadius(radius), utm=utm)
    retrievals = evaluation_retrievals(evaluation, dataset, dataset, num_queries=len(dataset))
    similarities = (descriptors["grd"] @ descriptors["sat"].T).numpy()
    for query, retrieval in enumerate(retrievals):
        positives = np.flatnonzero(distances[query] <= radius)
        assert 0 < len(positives) < len(dataset)
        rank = 1 + int((similarities[query] > similarities[query, positives].max()).sum())
        assert f"true match at rank {rank} (within {radius:g} m)" in retrieval.query_title
        shown = [dataset.ids.index(title.split("\n")[1]) for title in retrieval.titles]
        assert retrieval.is_match == [bool(distances[query, index] <= radius) for index in shown]
        assert all(f"{distances[query, index]:.0f} m from the query" in title
                   for index, title in zip(shown, retrieval.titles, strict=True))


def test_the_recall_curve_is_the_evaluations_own_recall_to_one_percent_of_the_gallery(tmp_path):
    descriptors = noisy_descriptors(1500, noise=1.5)
    evaluation = paired_evaluation(descriptors)
    reference = recall_at_k(descriptors["sat"], descriptors["grd"])
    assert evaluation.figures == reference
    for direction, ranking in evaluation.rankings.items():
        curve = list(ranking.recall(range(1, 16)).values())  # to 1% of 1500
        assert [curve[k - 1] for k in (1, 5, 10, 15)] == [reference[direction][name] for name in
                                                          ("r@1", "r@5", "r@10", "r@1%")]
        assert curve == sorted(curve)


def test_retrievals_rank_the_true_match_as_the_metric_does(tiny_world):
    dataset = CVUSA(tiny_world / "CVUSA", "val", **SIZES)
    descriptors = noisy_descriptors(len(dataset), noise=1.2, seed=4)
    retrievals = evaluation_retrievals(paired_evaluation(descriptors), dataset, dataset, num_queries=len(dataset),
                                       top_k=5)
    similarities = descriptors["grd"] @ descriptors["sat"].T
    for query, retrieval in enumerate(retrievals):
        rank = 1 + int((similarities[query] > similarities[query, query]).sum())
        assert f"true match at rank {rank}" in retrieval.query_title
        assert retrieval.is_match.count(True) == 1
        position = retrieval.is_match.index(True)
        assert position == (rank - 1 if rank <= 5 else 5)
        assert f"rank {rank} " in retrieval.titles[position] and dataset.ids[query] in retrieval.titles[position]
        assert retrieval.query.shape == (32, 128, 3) and retrieval.images[0].shape == (64, 64, 3)


class Images:
    """A stand-in dataset: `ids`, and item i a dict of one uint8 image under `key`."""

    def __init__(self, ids, key, shape):
        self.ids, self.key, self.shape = ids, key, shape

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {self.key: torch.full(self.shape, index * 9 % 256, dtype=torch.uint8)}


def test_gallery_retrievals_frame_the_positive_and_the_semi_positives_and_say_which(tmp_path):
    generator = torch.Generator().manual_seed(2)
    sat = torch.nn.functional.normalize(torch.randn(12, 16, generator=generator), dim=1)
    positive = torch.tensor([0, 3, 3, 7, 10])
    semi = torch.tensor([[1, 2], [4, 5], [4, 5], [8, 9], [11, 0]])
    grd = torch.nn.functional.normalize(sat[positive] + 0.5 * sat[semi[:, 0]], dim=1)
    queries = {"grd": grd, "positive": positive, "semi_positives": semi}
    evaluation = evaluate(queries, {"sat": sat}, PositiveTile())
    query_images = Images([f"Chicago/panorama/query_{i}_with_a_long_vigor_name.jpg" for i in range(5)], "grd",
                          (3, 32, 64))
    tiles = Images([f"tile_{j}" for j in range(12)], "sat", (3, 32, 32))
    retrievals = evaluation_retrievals(evaluation, query_images, tiles, num_queries=5)
    similarities = grd @ sat.T
    for query, retrieval in enumerate(retrievals):
        shown = [int(title.split("\n")[1].removeprefix("tile_")) for title in retrieval.titles]
        covering = [int(positive[query]), *semi[query].tolist()]
        assert retrieval.is_match == [index in covering for index in shown]
        for index, title in zip(shown, retrieval.titles, strict=True):
            lines = title.split("\n")
            if index == positive[query]:
                assert lines[-1] == "positive"
            elif index in covering:
                assert lines[-1] == "semi-positive"
            else:
                assert len(lines) == 2  # rank and distance, id
        rank = 1 + int((similarities[query] > similarities[query, positive[query]]).sum())
        assert f"true match at rank {rank}" in retrieval.query_title
        assert "\u2026" in retrieval.query_title and len(retrieval.query_title.split(":")[0]) < 40  # a long id cut
    written = write_test_report(tmp_path, tmp_path / "results.csv",
                                {**summary_for("VIGOR", "same-area test", 5), "p2s": evaluation.figures["p2s"]},
                                evaluation,
                                query_images, tiles)
    assert_readable_png(written["recall_curve"], min_bytes=3_000)


@pytest.fixture
def cvgl_log(caplog):
    """What the project's logger says (it does not propagate to the root logger caplog listens to)."""
    logger = logging.getLogger("cvgl")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_the_results_table_keeps_one_header_and_leaves_a_foreign_one_alone(tmp_path, cvgl_log):
    table = tmp_path / "deeper" / "results.csv"
    for run in ("a", "b"):
        assert append_results_row(table, results_row(summary_for("CVUSA", "val", 13), tmp_path / run)) == table
    lines = table.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 3
    assert [row["run_folder"] for row in csv.DictReader(lines)] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert list(csv.DictReader(lines))[0]["sat_size"] == "64x64"

    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,score\nx,1\n")
    written = append_results_row(foreign, results_row(summary_for("CVUSA", "val", 13), tmp_path))
    assert foreign.read_text() == "name,score\nx,1\n"  # left alone; the row went beside it, and says where
    assert written.parent == tmp_path and written.name.startswith("foreign_") and written.suffix == ".csv"
    assert written.read_text().splitlines()[0] == ",".join(CSV_COLUMNS) and len(written.read_text().splitlines()) == 2
    assert f"the row went to {written}" in cvgl_log.text
    assert append_results_row(foreign, results_row(summary_for("CVUSA", "val", 13), tmp_path)) == written
    assert len(written.read_text().splitlines()) == 3
    written.write_text("name\n")  # even the file beside it is foreign: nothing is written anywhere
    assert append_results_row(foreign, results_row(summary_for("CVUSA", "val", 13), tmp_path)) is None


def test_a_table_of_an_earlier_version_gains_the_new_columns_and_keeps_its_rows(tmp_path, cvgl_log):
    table = tmp_path / "results.csv"
    old_columns = [column for column in CSV_COLUMNS if column != "backbone"]
    earlier = results_row(summary_for("CVUSA", "val", 13), tmp_path / "old")
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(earlier)
    summary = {**summary_for("CVUSA", "val", 13), "backbone": "resnet18"}
    assert append_results_row(table, results_row(summary, tmp_path / "new")) == table
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert table.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert [(row["run_folder"], row["backbone"]) for row in rows] == [(str(tmp_path / "old"), ""),
                                                                       (str(tmp_path / "new"), "resnet18")]
    assert rows[0]["p2s_r@1"] == earlier["p2s_r@1"] and "gained the columns backbone" in cvgl_log.text
    assert [entry.name for entry in tmp_path.iterdir()] == ["results.csv"]  # nothing half-written left


def test_a_gallery_smaller_than_the_top_five_still_draws(tiny_world, tmp_path):
    dataset = torch.utils.data.Subset(CVUSA(tiny_world / "CVUSA", "val", **SIZES), range(3))
    dataset.ids = dataset.dataset.ids[:3]
    written = write_test_report(tmp_path, tmp_path / "results.csv", summary_for("CVUSA", "val", 3),
                                paired_evaluation(noisy_descriptors(3)), dataset, dataset)
    assert_readable_png(written["recall_curve"])
    image = assert_readable_png(written["retrievals"])
    assert image.shape[1] > image.shape[0]  # three aerial columns beside each panorama
