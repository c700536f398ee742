import json

import numpy as np
import pytest

from utils.descriptor_index import (
    DescriptorWriter,
    GalleryIndexError,
    IvfPqParams,
    Searcher,
    build_ivfpq,
    default_kind,
    rerank,
)


def clustered_gallery(count, dim, seed=0, places=60):
    """Unit descriptors around `places` centres (look-alike places), and queries near some of them: like a city's
    tiles, where many tiles resemble each other and a query's best match is one of a crowd."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((places, dim))
    gallery = centres[rng.integers(0, places, count)] + 0.6 * rng.standard_normal((count, dim))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = gallery[rng.choice(count, min(count, 200), replace=False)]
    queries = queries + 0.5 * rng.standard_normal(queries.shape) / np.sqrt(dim)
    return gallery.astype(np.float32), (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def write_all(folder, descriptors, batch=1000, fingerprint=None):
    writer = DescriptorWriter(folder, len(descriptors), fingerprint or {"build": 1})
    for start in range(writer.done, len(descriptors), batch):
        writer.append(descriptors[start: start + batch])
    writer.finish()


def brute_force(gallery, queries, k):
    """The top-k by inner product, one query at a time, as float32 sums."""
    out = []
    for query in queries:
        scores = [(float(np.dot(row.astype(np.float32), query)), i) for i, row in enumerate(gallery)]
        out.append([i for _, i in sorted(scores, key=lambda pair: (-pair[0], pair[1]))[:k]])
    return np.array(out)


def test_a_killed_build_continues_and_only_a_finished_one_is_named(tmp_path):
    descriptors, _ = clustered_gallery(2500, 32)
    writer = DescriptorWriter(tmp_path, 2500, {"checkpoint": "a"})
    writer.append(descriptors[:1000])
    writer.append(descriptors[1000:2000])
    del writer  # killed here
    assert not (tmp_path / "descriptors.npy").exists()
    assert json.loads((tmp_path / "progress.json").read_text())["done"] == 2000

    assert DescriptorWriter(tmp_path, 2500, {"checkpoint": "b"}).done == 0  # another build starts again
    assert DescriptorWriter(tmp_path, 2500, {"checkpoint": "a"}).done == 2000  # this one continues
    assert DescriptorWriter(tmp_path, 2600, {"checkpoint": "a"}).done == 0  # another gallery size: again
    fresh = DescriptorWriter(tmp_path / "fresh", 2500, {"checkpoint": "a"})
    fresh.append(descriptors[:1000])
    del fresh
    again = DescriptorWriter(tmp_path / "fresh", 2500, {"checkpoint": "a"})
    assert again.done == 1000
    again.append(descriptors[1000:])
    again.finish()
    stored = np.load(tmp_path / "fresh" / "descriptors.npy")
    assert stored.dtype == np.float16 and stored.shape == (2500, 32)
    np.testing.assert_array_equal(stored, descriptors.astype(np.float16))
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["descriptors.npy"]
    with pytest.raises(RuntimeError, match="1000 of 2500 descriptors written"):
        short = DescriptorWriter(tmp_path / "short", 2500, {"checkpoint": "a"})
        short.append(descriptors[:1000])
        short.finish()


def test_exact_search_is_brute_force(tmp_path):
    gallery, queries = clustered_gallery(3000, 48, seed=1)
    write_all(tmp_path, gallery)
    scores, rows = Searcher(tmp_path, "exact").search(queries[:40], 10)
    stored = gallery.astype(np.float16)
    expected = brute_force(stored, queries[:40], 10)
    assert (rows[:, 0] == expected[:, 0]).all()
    assert np.mean([len(set(a) & set(b)) for a, b in zip(rows, expected, strict=True)]) >= 9.9  # float32 sums' ties
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries[:40], stored[rows].astype(np.float32)),
                               atol=1e-5)


@pytest.mark.parametrize("count, dim", [(6000, 64), (9000, 128)])
def test_the_compressed_search_keeps_exact_search_top_matches(tmp_path, count, dim):
    gallery, queries = clustered_gallery(count, dim, seed=count)
    write_all(tmp_path, gallery)
    params = IvfPqParams.for_size(count, dim)
    assert params.shortlist < count  # the re-ranking sees only part of the gallery
    build_ivfpq(tmp_path, params)
    exact_scores, exact_rows = Searcher(tmp_path, "exact").search(queries, 10)
    scores, rows = Searcher(tmp_path, "ivfpq", params).search(queries, 10)
    assert np.mean(rows[:, 0] == exact_rows[:, 0]) >= 0.99
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact_rows, strict=True)]) >= 0.97
    found = rows[:, 0] == exact_rows[:, 0]  # where the same tile is found, the same exact similarity
    np.testing.assert_allclose(scores[found, 0], exact_scores[found, 0], atol=1e-5)


def test_rerank_orders_each_querys_candidates_by_exact_similarity():
    rng = np.random.default_rng(3)
    stored = rng.standard_normal((50, 8)).astype(np.float32)
    queries = rng.standard_normal((4, 8)).astype(np.float32)
    candidates = np.array([[3, 7, 9, -1], [0, 1, 2, 3], [49, 48, 3, 7], [5, -1, -1, -1]])
    scores, rows = rerank(stored, queries, candidates, 3)
    for q in range(4):
        valid = [c for c in candidates[q] if c >= 0]
        by_hand = sorted(valid, key=lambda c: -float(stored[c] @ queries[q]))[:3]
        assert list(rows[q][: len(by_hand)]) == by_hand
        np.testing.assert_allclose(scores[q][: len(by_hand)], [stored[c] @ queries[q] for c in by_hand], rtol=1e-5)
    assert np.isneginf(scores[3, 1:]).all()


def test_the_default_kind_and_parameters_follow_the_gallery_size():
    assert default_kind(1000) == "exact" and default_kind(200_000) == "exact" and default_kind(200_001) == "ivfpq"
    million = IvfPqParams.for_size(1_000_000, 2048)
    assert (million.nlist, million.pca_dim, million.pq_bytes) == (4096, 256, 64)
    assert million.factory(2048) == "PCA256,IVF4096,PQ64" and million.train_size == 40 * 4096
    assert IvfPqParams.for_size(100_000, 2048).nlist == 1024
    small = IvfPqParams.for_size(5000, 64)
    assert small.factory(64) == f"IVF{small.nlist},PQ16" and small.nlist <= 5000 // 40


def test_a_search_of_an_unknown_kind_is_one_line(tmp_path):
    write_all(tmp_path, clustered_gallery(100, 8)[0])
    with pytest.raises(GalleryIndexError, match="--index_type hnsw: expected one of exact, ivfpq"):
        Searcher(tmp_path, "hnsw")
