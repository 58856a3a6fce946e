"""Train/test split by sequence identity, and a homology check against the training split (docs/design.md#splits).

Sequences are clustered at 50% identity (default) and whole clusters go to train or test (95/5 of clusters,
deterministic given a seed), so no test protein has a close homolog in training. By default the clusters of
each source group are split on their own, so every group with two or more clusters gets test proteins; one
draw over all clusters (the reference's split) is ``stratify=False``.

Two clustering back-ends share one criterion — an edge joins two sequences when their best local alignment has
identity ≥ ``identity`` (identical residues / alignment columns including gaps) and covers ≥ ``coverage`` of
*both* sequences:

* ``python`` (the default): exhaustive Smith-Waterman (BLOSUM62, gaps 11 + k, :mod:`seqdance.store.align`) over
  all pairs that pass exact length/composition bounds, then greedy set cover. Deterministic and available on
  every machine, so the same command on the same data gives the same split everywhere. Quadratic in the number
  of sequences: meant for sets up to a few thousand;
* ``mmseqs``: MMseqs2 ``easy-cluster --min-seq-id I -c C --cov-mode 0`` (its ``--seq-id-mode 0`` identity,
  greedy set-cover clustering), an explicit choice for large sets (Debian/Ubuntu package ``mmseqs2``). MMseqs2
  additionally requires a k-mer prefilter hit and an E-value below 1e-3, so it can only find fewer edges than
  the exhaustive search: cluster counts agree closely, splits need not;
* ``auto``: ``mmseqs`` when the binary is on PATH, else ``python`` — the result then depends on the machine.

The method used is recorded with the split (the store's ``split`` metadata) and printed by ``dataset split``.

Multi-chain entries are clustered on their chains concatenated.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqdance.errors import InputError, SeqdanceError
from seqdance.store.align import ALPHABET, align_pairs, encode
from seqdance.store.options import (
    CLUSTER_METHODS,
    DEFAULT_CLUSTER_METHOD,
    DEFAULT_COVERAGE,
    DEFAULT_IDENTITY,
    DEFAULT_MIN_TEST_CLUSTERS,
    DEFAULT_TEST_FRACTION,
)


class ClusteringError(SeqdanceError, RuntimeError):
    """The external clustering tool (MMseqs2) failed; the message gives its exit status and last output."""


log = logging.getLogger(__name__)

#: Above this many sequences the pure-numpy back-end warns that MMseqs2 should be used.
PYTHON_BACKEND_SOFT_LIMIT = 3000


def mmseqs_binary() -> str | None:
    """Path of the ``mmseqs`` executable, or None ($SEQDANCE_MMSEQS overrides the PATH lookup)."""
    return os.environ.get("SEQDANCE_MMSEQS") or shutil.which("mmseqs")


def _resolve_method(method: str) -> str:
    if method not in CLUSTER_METHODS:
        raise InputError(f"clustering method must be one of {CLUSTER_METHODS}, not {method!r}")
    if method == "auto":
        return "mmseqs" if mmseqs_binary() else "python"
    if method == "mmseqs" and not mmseqs_binary():
        raise FileNotFoundError("the mmseqs binary was not found on PATH "
                                "(install MMseqs2, e.g. apt-get install mmseqs2)")
    return method


def _check_inputs(names: Sequence[str], sequences: Sequence[str]) -> None:
    if len(names) != len(sequences):
        raise InputError("need one sequence per name")
    if len(set(names)) != len(names):
        raise InputError("sequence names must be unique")
    for name, seq in zip(names, sequences):
        if not seq.replace(":", ""):
            raise InputError(f"sequence {name!r} is empty")


def _write_fasta(path: Path, names: Sequence[str], sequences: Sequence[str], prefix: str = "") -> None:
    # mmseqs uses the first word of a header as id: number the records and map back
    with open(path, "w", encoding="ascii") as fh:
        for k, seq in enumerate(sequences):
            fh.write(f">{prefix}{k}\n{seq.replace(':', '').upper()}\n")


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise ClusteringError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}): {' | '.join(tail)}")


def _mmseqs_options(identity: float, coverage: float, threads: int) -> list[str]:
    return [
        "--min-seq-id", f"{identity}", "-c", f"{coverage}", "--cov-mode", "0", "--seq-id-mode", "0",
        "--threads", str(max(1, threads)), "-v", "1",
    ]


def _mmseqs_representatives(
    names: Sequence[str], sequences: Sequence[str], identity: float, coverage: float, threads: int
) -> list[str]:
    binary = mmseqs_binary()
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="seqdance-mmseqs-") as tmp:
        work = Path(tmp)
        _write_fasta(work / "in.fasta", names, sequences)
        _run([binary, "easy-cluster", str(work / "in.fasta"), str(work / "out"), str(work / "tmp"),
              *_mmseqs_options(identity, coverage, threads)])
        table = pd.read_csv(work / "out_cluster.tsv", sep="\t", header=None, names=["rep", "member"], dtype=str)
    rep_of = dict(zip(table["member"].astype(int), table["rep"].astype(int)))
    missing = [names[k] for k in range(len(names)) if k not in rep_of]
    if missing:
        raise ClusteringError(f"mmseqs did not assign {len(missing)} sequence(s) to a cluster, e.g. {missing[:3]}")
    return [names[rep_of[k]] for k in range(len(names))]


def _composition(codes: Sequence[np.ndarray]) -> np.ndarray:
    comp = np.zeros((len(codes), len(ALPHABET)), dtype=np.int32)
    for k, c in enumerate(codes):
        comp[k] = np.bincount(c, minlength=len(ALPHABET))
    return comp


def candidate_pairs(
    codes_a: Sequence[np.ndarray], codes_b: Sequence[np.ndarray], identity: float, coverage: float, *, same: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs that can meet the criterion. Exact bounds, no heuristics: identical residues ≥ identity × columns
    ≥ identity × coverage × max(len), and identical residues ≤ the composition overlap and ≤ min(len)."""
    la = np.array([len(c) for c in codes_a], dtype=np.float64)
    lb = np.array([len(c) for c in codes_b], dtype=np.float64)
    need = identity * coverage * np.maximum(la[:, None], lb[None, :]) - 1e-9
    ok = np.minimum(la[:, None], lb[None, :]) >= need
    comp_a, comp_b = _composition(codes_a), _composition(codes_b)
    rows = np.flatnonzero(ok.any(axis=1))
    for start in range(0, len(rows), 256):  # bounded memory: (rows x n x alphabet) per block
        r = rows[start:start + 256]
        overlap = np.minimum(comp_a[r, None, :], comp_b[None, :, :]).sum(axis=2)
        ok[r] &= overlap >= need[r]
    if same:
        ok = np.triu(ok, k=1)
    i, j = np.nonzero(ok)
    return i, j


def similar_pairs(
    sequences_a: Sequence[str], sequences_b: Sequence[str] | None, identity: float, coverage: float
) -> pd.DataFrame:
    """All pairs meeting the criterion (python back-end); ``sequences_b=None`` compares a set with itself."""
    codes_a = [encode(s) for s in sequences_a]
    codes_b = codes_a if sequences_b is None else [encode(s) for s in sequences_b]
    i, j = candidate_pairs(codes_a, codes_b, identity, coverage, same=sequences_b is None)
    if len(i) == 0:
        return pd.DataFrame({"a": [], "b": [], "identity": [], "a_coverage": [], "b_coverage": []})
    stats = align_pairs([codes_a[k] for k in i], [codes_b[k] for k in j])
    keep = (stats.identity >= identity) & (stats.a_coverage >= coverage) & (stats.b_coverage >= coverage)
    return pd.DataFrame({
        "a": i[keep], "b": j[keep], "identity": stats.identity[keep],
        "a_coverage": stats.a_coverage[keep], "b_coverage": stats.b_coverage[keep],
    })


def greedy_set_cover(n: int, edges_a: np.ndarray, edges_b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Representative index of each node: repeatedly take the node with most unassigned neighbours (ties: longer
    sequence, then lower index) and assign it and its unassigned neighbours (MMseqs2 ``--cluster-mode 0``)."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(edges_a.tolist(), edges_b.tolist()):
        neighbours[a].append(b)
        neighbours[b].append(a)
    rep = np.full(n, -1, dtype=np.int64)
    degree = np.array([len(x) for x in neighbours], dtype=np.int64)
    while (rep < 0).any():
        free = np.flatnonzero(rep < 0)
        # lexicographic: max degree, then max length, then min index
        pick = free[np.lexsort((free, -lengths[free], -degree[free]))[0]]
        members = [pick] + [m for m in neighbours[pick] if rep[m] < 0]
        rep[members] = pick
        for m in members:
            for other in neighbours[m]:
                degree[other] -= 1
    return rep


def _python_representatives(names: Sequence[str], sequences: Sequence[str], identity: float,
                            coverage: float) -> list[str]:
    if len(names) > PYTHON_BACKEND_SOFT_LIMIT:
        log.warning("clustering %d sequences with the exhaustive python search is quadratic and slow; "
                    "method 'mmseqs' (--method mmseqs) is made for large sets", len(names))
    edges = similar_pairs(sequences, None, identity, coverage)
    lengths = np.array([len(s.replace(":", "")) for s in sequences])
    rep = greedy_set_cover(len(names), edges["a"].to_numpy(int), edges["b"].to_numpy(int), lengths)
    return [names[r] for r in rep]


def cluster_sequences(
    names: Sequence[str],
    sequences: Sequence[str],
    *,
    identity: float = DEFAULT_IDENTITY,
    coverage: float = DEFAULT_COVERAGE,
    method: str = DEFAULT_CLUSTER_METHOD,
    threads: int = 1,
) -> pd.DataFrame:
    """Cluster sequences; returns a frame with columns ``name, cluster`` (cluster = representative's name)."""
    _check_inputs(names, sequences)
    if not 0 < identity <= 1 or not 0 <= coverage <= 1:
        raise InputError(f"identity must be in (0, 1] and coverage in [0, 1] (got {identity}, {coverage})")
    used = _resolve_method(method)
    if not names:
        reps: list[str] = []
    elif used == "mmseqs":
        reps = _mmseqs_representatives(names, sequences, identity, coverage, threads)
    else:
        reps = _python_representatives(names, sequences, identity, coverage)
    out = pd.DataFrame({"name": list(names), "cluster": reps})
    out.attrs["method"] = used
    return out


def _draw_test(ids: list[str], n_test: int, seed: int | Sequence[int]) -> set[str]:
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[k] for k in order[:n_test]}


def cluster_groups(clusters: pd.DataFrame) -> dict[str, str]:
    """Source group of each cluster: the group most of its members come from (ties: schema order)."""
    from seqdance.schema import SOURCE_GROUPS

    rank = {g: k for k, g in enumerate(SOURCE_GROUPS)}
    best: dict[str, tuple[tuple[int, int, str], str]] = {}
    for (cluster, group), n in clusters.groupby(["cluster", "group"]).size().items():
        key = (-int(n), rank.get(str(group), len(rank)), str(group))
        if cluster not in best or key < best[cluster][0]:
            best[cluster] = (key, str(group))
    return {cluster: group for cluster, (_, group) in best.items()}


def canonical_cluster_ids(clusters: pd.DataFrame) -> pd.Series:
    """Each row's cluster named by its alphabetically first member: which member a back-end made the
    representative (a tie-break) then cannot change the draw, so equal memberships give equal splits."""
    if "name" not in clusters.columns:
        return clusters["cluster"].astype(str)
    return clusters.groupby("cluster")["name"].transform("min").astype(str)


def assign_split(
    clusters: pd.DataFrame,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    stratify: bool = True,
    min_test_clusters: int = DEFAULT_MIN_TEST_CLUSTERS,
) -> pd.Series:
    """``train``/``test`` label per row; whole clusters go to one side, and the result depends only on the
    cluster membership (and groups), not on the row order nor on which member represents a cluster (clusters
    are drawn by their first member's name, :func:`canonical_cluster_ids`).

    With ``stratify`` and a ``group`` column, each cluster belongs to the source group most of its members come
    from and each group's clusters are split on their own (a seeded shuffle): ``round(test_fraction × n)`` of
    its n clusters go to test, at least ``min_test_clusters`` when the group has more clusters than that, and
    at least one always stays in training. So a small group (two MD trajectories beside hundreds of
    structures) still gets test proteins. Without (or without groups): one draw over all clusters, the first
    ``test_fraction`` of a seeded shuffle to test (at least one when there are two or more clusters).
    """
    if not 0 <= test_fraction < 1:
        raise InputError(f"test fraction must be in [0, 1), got {test_fraction}")
    if min_test_clusters < 0:
        raise InputError(f"the minimum of test clusters per group must be ≥ 0, got {min_test_clusters}")
    clusters = clusters.assign(cluster=canonical_cluster_ids(clusters))
    test: set[str] = set()
    if stratify and "group" in clusters.columns:
        owner = cluster_groups(clusters)
        for k, group in enumerate(sorted(set(owner.values()))):
            ids = sorted(c for c, g in owner.items() if g == group)
            n_test = round(test_fraction * len(ids))
            if test_fraction > 0:
                n_test = max(n_test, min_test_clusters)
            n_test = min(n_test, len(ids) - 1)
            test |= _draw_test(ids, n_test, [seed, k])
    else:
        ids = sorted(set(clusters["cluster"]))
        n_test = round(test_fraction * len(ids))
        if test_fraction > 0 and len(ids) >= 2:
            n_test = max(1, n_test)
        test = _draw_test(ids, n_test, seed)
    return pd.Series(np.where(clusters["cluster"].isin(test), "test", "train"), index=clusters.index, name="label")


@dataclass
class SplitResult:
    """Cluster membership and labels of every protein, and summary statistics."""

    table: pd.DataFrame  # name, cluster, label (+ group when known)
    stats: dict[str, Any] = field(default_factory=dict)


def cluster_statistics(table: pd.DataFrame) -> dict[str, Any]:
    """Counts per label (and source group), cluster size distribution, singletons."""
    sizes = table.groupby("cluster").size()
    stats: dict[str, Any] = {
        "proteins": len(table),
        "clusters": len(sizes),
        "singletons": int((sizes == 1).sum()),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "mean_cluster_size": float(sizes.mean()) if len(sizes) else 0.0,
    }
    if "label" in table:
        for label, part in table.groupby("label"):
            entry: dict[str, Any] = {"proteins": len(part), "clusters": int(part["cluster"].nunique())}
            if "group" in part:
                entry["groups"] = {str(g): int(c) for g, c in part.groupby("group").size().items()}
            stats[str(label)] = entry
    if "label" in table and "group" in table:
        by_group: dict[str, Any] = {}
        for group, part in table.groupby("group"):
            test = part[part["label"] == "test"]
            by_group[str(group)] = {
                "proteins": len(part), "clusters": int(part["cluster"].nunique()),
                "train": int((part["label"] == "train").sum()), "test": len(test),
                "test_clusters": int(test["cluster"].nunique()),
            }
        stats["by_group"] = by_group
    return stats


def split_table(stats: dict[str, Any]) -> str:
    """A readable table of a split: per source group (and overall) proteins, clusters, train and test."""
    from seqdance.schema import SOURCE_GROUPS

    rank = {g: k for k, g in enumerate(SOURCE_GROUPS)}
    by_group = stats.get("by_group", {})
    header = ("group", "proteins", "clusters", "train", "test", "test clusters")
    rows = [(g, *(str(by_group[g][k]) for k in ("proteins", "clusters", "train", "test", "test_clusters")))
            for g in sorted(by_group, key=lambda g: (rank.get(g, len(rank)), g))]
    test = stats.get("test", {})
    rows.append(("all", str(stats["proteins"]), str(stats["clusters"]), str(stats.get("train", {}).get("proteins", 0)),
                 str(test.get("proteins", 0)), str(test.get("clusters", 0))))
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    lines = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    p = stats.get("parameters", {})
    if p:
        scope = "per source group" if p.get("stratify") else "over all clusters"
        lines.append(f"clusters: {p.get('method')} at identity ≥ {p.get('identity')}, coverage ≥ "
                     f"{p.get('coverage')} of both sequences; test fraction {p.get('test_fraction')} {scope}"
                     + (f" (at least {p.get('min_test_clusters')} test cluster(s) per group that has more)"
                        if p.get("stratify") else "") + f", seed {p.get('seed')}")
    for group, entry in by_group.items():
        if entry["test"] == 0:
            lines.append(f"note: group {group} has no test protein ({entry['clusters']} cluster(s): one always "
                         "stays in training)")
    return "\n".join(lines)


def split_sequences(
    names: Sequence[str],
    sequences: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    identity: float = DEFAULT_IDENTITY,
    coverage: float = DEFAULT_COVERAGE,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    method: str = DEFAULT_CLUSTER_METHOD,
    threads: int = 1,
    stratify: bool = True,
    min_test_clusters: int = DEFAULT_MIN_TEST_CLUSTERS,
) -> SplitResult:
    """Cluster and split (stratified by source group when ``groups`` are given, see :func:`assign_split`); the
    result's stats include the method and parameters used."""
    table = cluster_sequences(names, sequences, identity=identity, coverage=coverage, method=method, threads=threads)
    method_used = table.attrs.get("method", method)
    if groups is not None:
        table["group"] = list(groups)
    stratified = stratify and groups is not None
    table["label"] = assign_split(table, test_fraction=test_fraction, seed=seed, stratify=stratified,
                                  min_test_clusters=min_test_clusters)
    stats = cluster_statistics(table)
    stats["parameters"] = {
        "identity": identity, "coverage": coverage, "coverage_mode": "both", "test_fraction": test_fraction,
        "seed": seed, "method": method_used, "stratify": stratified,
        "min_test_clusters": min_test_clusters if stratified else None,
    }
    return SplitResult(table=table, stats=stats)


def split_store(
    store_path: str | os.PathLike[str],
    *,
    identity: float = DEFAULT_IDENTITY,
    coverage: float = DEFAULT_COVERAGE,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    method: str = DEFAULT_CLUSTER_METHOD,
    threads: int = 1,
    clusters_out: str | os.PathLike[str] | None = None,
    stratify: bool = True,
    min_test_clusters: int = DEFAULT_MIN_TEST_CLUSTERS,
) -> SplitResult:
    """Split a store in place: rewrite its labels, record the split in its metadata, refresh the index CSV.

    Only the fixed-width label bytes and one attribute are rewritten (no file-structure change), so an
    interrupted split leaves a readable store; run it again to finish.
    """
    import h5py

    from seqdance.io_utils import atomic_path
    from seqdance.store.hdf5 import INDEX_GROUP, LABEL_WIDTH, META_GROUP, DynamicsStore, index_csv_path

    with DynamicsStore.open(store_path) as store:
        if store.released:
            raise InputError(f"{store_path} is a released-layout file: its split lives in its index CSV")
        index = store.index.copy()
    sequences = [s.replace("<eos><cls>", ":") for s in index["modify_seq"]]
    result = split_sequences(
        list(index["name"]), sequences, groups=list(index["group"]), identity=identity, coverage=coverage,
        test_fraction=test_fraction, seed=seed, method=method, threads=threads, stratify=stratify,
        min_test_clusters=min_test_clusters,
    )
    labels = np.array([s.encode() for s in result.table["label"]], dtype=f"S{LABEL_WIDTH}")
    with h5py.File(store_path, "r+") as fh:
        fh[f"{INDEX_GROUP}/label"][...] = labels
        fh[META_GROUP].attrs["split"] = json.dumps(result.stats, sort_keys=True)
    with DynamicsStore.open(store_path) as store:
        store.export_index(index_csv_path(store_path))
    if clusters_out is not None:
        with atomic_path(clusters_out) as tmp:
            result.table.to_csv(tmp, sep="\t", index=False)
    return result


def homology_hits(
    query_names: Sequence[str],
    query_sequences: Sequence[str],
    target_names: Sequence[str],
    target_sequences: Sequence[str],
    *,
    identity: float = DEFAULT_IDENTITY,
    coverage: float = DEFAULT_COVERAGE,
    method: str = DEFAULT_CLUSTER_METHOD,
    threads: int = 1,
) -> pd.DataFrame:
    """Per query: the best target meeting the clustering criterion (identity and coverage of both), if any.

    Columns: query, has_homolog, target, identity, query_coverage, target_coverage, n_homologs.
    """
    _check_inputs(query_names, query_sequences)
    _check_inputs(target_names, target_sequences)
    used = _resolve_method(method)
    if used == "mmseqs" and len(target_names) and len(query_names):
        hits = _mmseqs_search(query_sequences, target_sequences, identity, coverage, threads)
    elif len(target_names) and len(query_names):
        hits = similar_pairs(query_sequences, target_sequences, identity, coverage)
    else:
        hits = pd.DataFrame({"a": [], "b": [], "identity": [], "a_coverage": [], "b_coverage": []})
    rows = []
    for q, name in enumerate(query_names):
        mine = hits[hits["a"] == q]
        if len(mine):
            best = mine.sort_values(["identity", "b"], ascending=[False, True]).iloc[0]
            rows.append({
                "query": name, "has_homolog": True, "target": target_names[int(best["b"])],
                "identity": float(best["identity"]), "query_coverage": float(best["a_coverage"]),
                "target_coverage": float(best["b_coverage"]), "n_homologs": int(mine["b"].nunique()),
            })
        else:
            rows.append({"query": name, "has_homolog": False, "target": "", "identity": np.nan,
                         "query_coverage": np.nan, "target_coverage": np.nan, "n_homologs": 0})
    out = pd.DataFrame(rows)
    out.attrs["method"] = used
    return out


def _mmseqs_search(
    query_sequences: Sequence[str], target_sequences: Sequence[str], identity: float, coverage: float, threads: int
) -> pd.DataFrame:
    binary = mmseqs_binary()
    assert binary is not None
    with tempfile.TemporaryDirectory(prefix="seqdance-mmseqs-") as tmp:
        work = Path(tmp)
        _write_fasta(work / "q.fasta", [], query_sequences, prefix="q")
        _write_fasta(work / "t.fasta", [], target_sequences, prefix="t")
        _run([binary, "easy-search", str(work / "q.fasta"), str(work / "t.fasta"), str(work / "hits.tsv"),
              str(work / "tmp"), *_mmseqs_options(identity, coverage, threads),
              "--format-output", "query,target,fident,qstart,qend,qlen,tstart,tend,tlen"])
        cols = ["query", "target", "fident", "qstart", "qend", "qlen", "tstart", "tend", "tlen"]
        table = pd.read_csv(work / "hits.tsv", sep="\t", header=None, names=cols, dtype={"query": str, "target": str})
    return pd.DataFrame({
        "a": table["query"].str[1:].astype(int),
        "b": table["target"].str[1:].astype(int),
        "identity": table["fident"].astype(float),
        "a_coverage": (table["qend"] - table["qstart"] + 1) / table["qlen"],
        "b_coverage": (table["tend"] - table["tstart"] + 1) / table["tlen"],
    })
