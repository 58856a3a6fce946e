"""The choices of the scoring options, defined once (light: the CLI reads them without importing torch)."""

from __future__ import annotations

from typing import Literal

#: Which output entries a property's change averages over (see :mod:`seqdance.scoring.dynamics_score`).
Region = Literal["reference", "residues", "local"]
REGIONS: tuple[str, ...] = ("reference", "residues", "local")
#: Default half-width (residues) of the ``local`` region.
DEFAULT_LOCAL_RADIUS = 10
#: ProteinGym's number of bootstrap resamples for its standard errors.
DEFAULT_BOOTSTRAP_SAMPLES = 10_000
