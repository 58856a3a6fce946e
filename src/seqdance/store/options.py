"""The defaults and choices of the split and homology options, defined once (light: the CLI reads them without
importing pandas or h5py)."""

from __future__ import annotations

#: Clustering criterion: minimum identity, and minimum alignment coverage of both sequences.
DEFAULT_IDENTITY = 0.5
DEFAULT_COVERAGE = 0.8
#: Share of the clusters (of each source group, when stratified) that go to test.
DEFAULT_TEST_FRACTION = 0.05
#: A source group needs at least this many clusters to get test clusters when the split is stratified.
DEFAULT_MIN_GROUP_CLUSTERS = 2
#: How sequences are clustered: MMseqs2 when on PATH ("auto"), MMseqs2, or the pure-Python fallback.
CLUSTER_METHODS: tuple[str, ...] = ("auto", "mmseqs", "python")
