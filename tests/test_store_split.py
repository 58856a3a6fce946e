"""Identity clustering (numpy Smith-Waterman and MMseqs2), the 95/5 split by cluster, homology hits."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from seqdance.store.align import align_pairs
from seqdance.store.split import (
    assign_split,
    candidate_pairs,
    cluster_sequences,
    greedy_set_cover,
    homology_hits,
    mmseqs_binary,
)

AA = "ACDEFGHIKLMNPQRSTVWY"
needs_mmseqs = pytest.mark.skipif(mmseqs_binary() is None, reason="mmseqs binary not on PATH (apt-get install mmseqs2)")


def _random(rng, n):
    return "".join(rng.choice(list(AA), n))


def _mutate(rng, seq, identity):
    out = list(seq)
    for i in rng.choice(len(seq), round((1 - identity) * len(seq)), replace=False):
        out[i] = rng.choice([a for a in AA if a != seq[i]])
    return "".join(out)


def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    a, b = [], []
    for k in range(n):
        s = _random(rng, int(rng.integers(8, 90)))
        if k % 3 == 0:
            t = _random(rng, int(rng.integers(8, 90)))
        else:
            t = list(_mutate(rng, s, 0.6))
            for _ in range(int(rng.integers(0, 3))):  # indels
                pos = int(rng.integers(0, len(t)))
                if rng.random() < 0.5:
                    del t[pos]
                else:
                    t.insert(pos, rng.choice(list(AA)))
            t = "".join(t) or "A"
        a.append(s)
        b.append(t)
    return a, b


def test_alignment_scores_match_biopython_exactly() -> None:
    bio = pytest.importorskip("Bio.Align")
    from Bio.Align import substitution_matrices

    aligner = bio.PairwiseAligner(mode="local", substitution_matrix=substitution_matrices.load("BLOSUM62"),
                                  open_gap_score=-12, extend_gap_score=-1)
    a, b = _pairs(120)
    stats = align_pairs(a, b)
    expected = np.array([aligner.score(x, y) for x, y in zip(a, b)])
    np.testing.assert_array_equal(stats.score, expected)
    # where Biopython's first optimal alignment has the same columns, identities and spans agree too
    agree = 0
    for k, (x, y) in enumerate(zip(a, b)):
        aln = aligner.align(x, y)[0]
        counts = aln.counts()
        cols = counts.identities + counts.mismatches + counts.gaps
        if cols == stats.columns[k]:
            agree += 1
            assert counts.identities == stats.identities[k]
            c = aln.coordinates
            assert (c[0, 0] + 1, c[0, -1], c[1, 0] + 1, c[1, -1]) == (
                stats.a_start[k], stats.a_end[k], stats.b_start[k], stats.b_end[k])
    assert agree >= 100  # ties between equally good alignments are rare


def test_alignment_statistics_of_known_cases() -> None:
    s = "MKTAYIAKQRQISFVKSHFSRQ"
    stats = align_pairs([s, s, s, "WWWW"], [s, "GG" + s[5:] + "GG", s[:10] + "A" + s[11:], "PPPP"])
    assert stats.identity[0] == 1.0 and stats.a_coverage[0] == 1.0 and stats.b_coverage[0] == 1.0
    assert (stats.a_start[1], stats.a_end[1], stats.b_start[1], stats.b_end[1]) == (6, 22, 3, 19)
    assert stats.identities[2] == len(s) - 1 and stats.columns[2] == len(s)
    assert stats.columns[3] == 0 and stats.identity[3] == 0.0


def test_prefilter_is_exact_on_its_bounds() -> None:
    rng = np.random.default_rng(1)
    from seqdance.store.align import encode

    seqs = [_random(rng, n) for n in (20, 21, 60, 200)]
    i, j = candidate_pairs([encode(s) for s in seqs], [encode(s) for s in seqs], 0.5, 0.8, same=True)
    pairs = set(zip(i.tolist(), j.tolist()))
    assert (0, 1) in pairs and (0, 3) not in pairs and (2, 3) not in pairs  # 20 < 0.4 * 200; 60 < 0.4 * 200


def test_greedy_set_cover_picks_hubs_first() -> None:
    # star around 2, plus an edge 4-5 and a singleton 6
    rep = greedy_set_cover(7, np.array([2, 2, 2, 4]), np.array([0, 1, 3, 5]), np.array([5, 5, 5, 5, 9, 5, 5]))
    assert rep.tolist() == [2, 2, 2, 2, 4, 4, 6]


def test_python_clusters_families_and_split_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    names, seqs, family = [], [], []
    for f in range(8):
        root = _random(rng, int(rng.integers(40, 70)))
        for m in range(3):
            names.append(f"f{f}_m{m}")
            seqs.append(root if m == 0 else _mutate(rng, root, 0.8))
            family.append(f)
    table = cluster_sequences(names, seqs, method="python")
    assert table.attrs["method"] == "python"
    assert table.groupby("cluster").size().tolist() == [3] * 8
    assert (table.groupby("cluster").apply(lambda g: len({family[names.index(n)] for n in g["name"]})) == 1).all()
    labels = assign_split(table, test_fraction=0.25, seed=7)
    assert labels.tolist() == assign_split(table, test_fraction=0.25, seed=7).tolist()
    assert (labels == "test").sum() == 6  # 2 of 8 clusters, whole clusters
    assert table.assign(label=labels).groupby("cluster")["label"].nunique().max() == 1
    shuffled = table.sample(frac=1.0, random_state=0)
    relabelled = assign_split(shuffled, test_fraction=0.25, seed=7)
    assert dict(zip(shuffled["name"], relabelled)) == dict(zip(table["name"], labels))  # order-independent


@needs_mmseqs
def test_mmseqs_and_python_agree_on_real_sequences(small_real_store) -> None:
    """Same criterion, two implementations: nearly the same edges (pairs at ≥50% identity, ≥80% coverage) on
    the real sequences; clusters then differ only where greedy set cover breaks ties differently."""
    from seqdance.store import DynamicsStore
    from seqdance.store.split import _mmseqs_search, similar_pairs

    index = DynamicsStore.open(small_real_store).index
    names = list(index["name"])
    seqs = [s.replace("<eos><cls>", ":") for s in index["modify_seq"]]
    ours = similar_pairs(seqs, None, 0.5, 0.8)
    theirs = _mmseqs_search(seqs, seqs, 0.5, 0.8, 1)
    theirs = theirs[theirs["a"] < theirs["b"]]
    e_ours, e_theirs = set(zip(ours["a"], ours["b"])), set(zip(theirs["a"], theirs["b"]))
    assert len(e_ours) >= 10
    assert len(e_ours & e_theirs) >= 0.9 * len(e_ours | e_theirs)
    mm = cluster_sequences(names, seqs, method="mmseqs")
    py = cluster_sequences(names, seqs, method="python")
    assert mm.attrs["method"] == "mmseqs"
    assert abs(mm["cluster"].nunique() - py["cluster"].nunique()) <= 2


@pytest.mark.parametrize("method", ["python", pytest.param("mmseqs", marks=needs_mmseqs)])
def test_homology_hits(method: str) -> None:
    rng = np.random.default_rng(5)
    targets = [_random(rng, 80) for _ in range(6)]
    queries = [_mutate(rng, targets[2], 0.7), _random(rng, 80), targets[4][:70], _mutate(rng, targets[0], 0.3)]
    hits = homology_hits(["q_close", "q_random", "q_fragment", "q_far"], queries,
                         [f"t{k}" for k in range(6)], targets, method=method).set_index("query")
    assert bool(hits.loc["q_close", "has_homolog"]) and hits.loc["q_close", "target"] == "t2"
    assert hits.loc["q_close", "identity"] == pytest.approx(0.7, abs=0.05)
    assert bool(hits.loc["q_fragment", "has_homolog"]) and hits.loc["q_fragment", "target"] == "t4"
    assert not hits.loc["q_random", "has_homolog"] and not hits.loc["q_far", "has_homolog"]
    strict = homology_hits(["q"], [queries[0]], ["t2"], [targets[2]], identity=0.9, method=method)
    assert not strict["has_homolog"].iloc[0]
    assert isinstance(hits, pd.DataFrame)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unique"):
        cluster_sequences(["a", "a"], ["ACD", "ACD"], method="python")
    with pytest.raises(ValueError, match="empty"):
        cluster_sequences(["a"], [""], method="python")
    with pytest.raises(ValueError, match="method"):
        cluster_sequences(["a"], ["A"], method="cdhit")


def test_stratified_split_gives_every_group_test_clusters() -> None:
    names = [f"nma{k}" for k in range(40)] + ["md_a", "md_b", "idr_a"]
    groups = ["nma"] * 40 + ["md", "md", "idr"]
    table = pd.DataFrame({"name": names, "cluster": names, "group": groups})
    table.loc[table["name"] == "nma39", "cluster"] = "md_a"  # a cluster shared across groups belongs to md
    for seed in range(5):
        labels = assign_split(table, test_fraction=0.05, seed=seed)
        test = table[labels == "test"]
        assert (test["group"] == "md").sum() == 1  # 2 md clusters: one to test, one stays in training
        assert (test["group"] == "idr").sum() == 0  # a single cluster always stays in training
        assert 2 <= (test["group"] == "nma").sum() <= 3  # round(0.05 x 39) clusters (+ nma39 when md_a is test)
        assert table.assign(label=labels).groupby("cluster")["label"].nunique().max() == 1
    shuffled = table.sample(frac=1.0, random_state=1)
    assert dict(zip(shuffled["name"], assign_split(shuffled, seed=3))) == dict(zip(table["name"],
                                                                                   assign_split(table, seed=3)))
    more = assign_split(table, test_fraction=0.05, seed=0, min_test_clusters=4)
    assert (table[more == "test"]["group"] == "nma").sum() >= 4
    flat = assign_split(table, test_fraction=0.05, seed=0, stratify=False)
    assert (flat == "test").sum() == round(0.05 * 41)  # one draw over all 41 clusters, md may get none


def test_split_table_is_readable() -> None:
    from seqdance.store.split import split_sequences, split_table

    rng = np.random.default_rng(4)
    seqs = [_random(rng, 60) for _ in range(12)]
    result = split_sequences([f"p{k}" for k in range(12)], seqs, groups=["nma"] * 10 + ["md"] * 2,
                             method="python", test_fraction=0.2)
    text = split_table(result.stats)
    lines = text.splitlines()
    assert lines[0].split() == ["group", "proteins", "clusters", "train", "test", "test", "clusters"]
    md = next(line.split() for line in lines if line.startswith("md "))
    assert md == ["md", "2", "2", "1", "1", "1"]
    assert "per source group" in text and result.stats["by_group"]["nma"]["test"] == 2


def test_default_split_is_the_same_whatever_is_installed(shared_data, tmp_path, capsys, monkeypatch) -> None:
    """The default method never depends on what is installed: with an ``mmseqs`` on PATH (a stand-in that
    records being called) ``dataset split`` still clusters in Python, records and prints that, and gives the split
    it gives without one; MMseqs2 runs only when asked for (``--method mmseqs``, or ``auto``)."""
    from _store_fixtures import nma_rows, write_manifest

    from seqdance.cli.dataset import main as dataset_main
    from seqdance.store import DynamicsStore

    rows = nma_rows(shared_data, 10, 0)
    if len(rows) < 10:
        pytest.skip("shared structures absent")
    store = tmp_path / "s.h5"
    assert dataset_main(["build", str(write_manifest(tmp_path / "m.csv", rows)), "-o", str(store), "-q"]) == 0
    called = tmp_path / "mmseqs_was_called"
    fake = tmp_path / "bin" / "mmseqs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n: > {called}\necho 'fake mmseqs' >&2\nexit 3\n")
    fake.chmod(0o755)

    def split(*extra: str) -> tuple[dict, dict, str]:
        capsys.readouterr()
        assert dataset_main(["split", str(store), "--test-fraction", "0.3", *extra]) == 0
        printed = capsys.readouterr().out
        with DynamicsStore.open(store) as opened:
            labels = dict(zip(opened.index["name"], opened.index["label"]))
            recorded = opened.metadata["split"]
        return labels, recorded, printed

    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SEQDANCE_MMSEQS", raising=False)
    with_mmseqs, recorded, printed = split()
    assert not called.exists()  # the old default ("auto") ran MMseqs2 here
    assert recorded["parameters"]["method"] == "python" and "clusters: python at identity" in printed
    monkeypatch.setenv("PATH", "/nonexistent")
    without_mmseqs, _, _ = split()
    assert with_mmseqs == without_mmseqs and set(with_mmseqs.values()) == {"train", "test"}
    monkeypatch.setenv("SEQDANCE_MMSEQS", str(fake))
    for method in ("mmseqs", "auto"):
        assert dataset_main(["split", str(store), "--method", method]) == 1
        assert "easy-cluster failed (exit 3)" in capsys.readouterr().err and called.exists()
        called.unlink()


def test_split_does_not_depend_on_which_member_represents_a_cluster() -> None:
    """MMseqs2 and the Python search may find the same clusters but pick other representatives (a tie-break):
    the draw goes by each cluster's first member, so equal memberships give equal splits."""
    members = [(f"a{k:02d}", f"b{19 - k:02d}") for k in range(20)]  # the b members sort in reverse order
    names = [name for pair in members for name in pair]
    groups = ["nma"] * 36 + ["md"] * 4
    first = pd.DataFrame({"name": names, "cluster": [m[0] for m in members for _ in m], "group": groups})
    second = first.assign(cluster=[m[1] for m in members for _ in m])
    for seed in range(6):
        a = assign_split(first, seed=seed, test_fraction=0.2)
        b = assign_split(second, seed=seed, test_fraction=0.2)
        assert list(a) == list(b) and (a == "test").any()
