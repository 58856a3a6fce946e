"""The defaults and choices of the split and homology options, defined once (light: the CLI reads them without
importing pandas or h5py)."""

from __future__ import annotations

#: Clustering criterion: minimum identity, and minimum alignment coverage of both sequences.
DEFAULT_IDENTITY = 0.5
DEFAULT_COVERAGE = 0.8
#: Share of the clusters (of each source group, when stratified) that go to test.
DEFAULT_TEST_FRACTION = 0.05
#: Test clusters each source group gets at least (when it has more clusters than that) in a stratified split.
DEFAULT_MIN_TEST_CLUSTERS = 1
#: How sequences are clustered: the exhaustive pure-Python search (the default: the same result on every machine),
#: MMseqs2 (an explicit choice, for large sets), or "auto" (MMseqs2 when on PATH, else python: machine-dependent).
CLUSTER_METHODS: tuple[str, ...] = ("python", "mmseqs", "auto")
DEFAULT_CLUSTER_METHOD = "python"
