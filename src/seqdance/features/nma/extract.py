"""Normal-mode features of a structure file: :func:`extract_nma` (returns
:class:`~seqdance.features.results.NmaFeatures`), the Cα reader (:mod:`seqdance.features.inputs.structures`) and the
elastic-network modes (:mod:`seqdance.features.nma.modes`) put together."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from seqdance.errors import InputError
from seqdance.features.conformation import conformation_arrays, conformational_properties
from seqdance.features.inputs.spec import InputSpecLike
from seqdance.features.inputs.structures import CalphaStructure, read_calpha_structure
from seqdance.features.nma.modes import PAIR_KEYS, RESIDUE_KEYS, NmaError, nma_features
from seqdance.features.options import NmaOptions, nma_options
from seqdance.features.results import NmaFeatures
from seqdance.schema import ANGSTROM_PER_NM


def residue_labels(structure: CalphaStructure) -> list[str]:
    """Readable residue names such as ``A:GLY12`` or ``B:SER100A`` for messages."""
    return [
        f"{rid['chain']}:{name}{int(rid['resseq'])}{rid['icode']}"
        for rid, name in zip(structure.residue_ids, structure.resnames)
    ]


def extract_nma(structure: InputSpecLike | CalphaStructure, options: NmaOptions | None = None,
                **keywords: Any) -> NmaFeatures:
    """Normal-mode features of a structure file (PDB/mmCIF, optionally gzipped) or a read :class:`CalphaStructure`;
    what it returns is :class:`~seqdance.features.results.NmaFeatures`. Errors name the file and say what is wrong.

    ``options`` (:class:`~seqdance.features.options.NmaOptions`), or its fields as keywords (``chains``, ``model``,
    ``zero_modes``, ``disconnected``, ``float32``): keywords change the given options.
    """
    options = nma_options(options, **keywords)
    if isinstance(structure, CalphaStructure):
        if options.chains is not None or options.model != 0:
            raise InputError("chains/model select atoms while reading a file; pass them to read_calpha_structure")
        calphas = structure
    else:
        calphas = read_calpha_structure(structure, chains=options.chains, model=options.model)
    try:
        result = nma_features(calphas.coords, zero_modes=options.zero_modes, disconnected=options.disconnected,
                              labels=residue_labels(calphas))
    except NmaError as exc:
        raise NmaError(f"{calphas.source}: {exc}") from exc
    except MemoryError as exc:  # the 3N x 3N Hessian and its eigenvectors: this structure does not fit
        n = len(calphas.coords)
        need = 2 * (3 * n) ** 2 * 8 / 1024**3
        raise NmaError(f"{calphas.source}: {n} residues need about {need:.1f} GiB for the ANM eigenproblem, more "
                       "than this machine could allocate; select chains (--chains) or use a machine with more "
                       "memory") from exc
    except np.linalg.LinAlgError as exc:  # LAPACK did not converge on this network
        raise NmaError(f"{calphas.source}: the eigen-decomposition of its elastic network failed ({exc})") from exc
    dtype = np.float32 if options.float32 else np.float64
    features: dict[str, object] = {name: result.gnm_msf[k].astype(dtype, copy=False)
                                   for k, name in enumerate(RESIDUE_KEYS)}
    features.update({name: result.anm_cor[k].astype(dtype, copy=False) for k, name in enumerate(PAIR_KEYS)})
    features.update(
        sequence=calphas.sequence,
        residue_ids=calphas.residue_ids,
        chain_lengths=np.asarray(calphas.chain_lengths, dtype=np.int64),
        skipped_residues=list(calphas.skipped),
        zero_modes=options.zero_modes,
        disconnected=options.disconnected,
        n_pieces=result.n_pieces,
        gnm_range_sizes=np.asarray(result.gnm_range_sizes, dtype=np.int64),
        anm_range_sizes=np.asarray(result.anm_range_sizes, dtype=np.int64),
        gnm_zero_modes=result.gnm_zero_modes,
        anm_zero_modes=result.anm_zero_modes,
    )
    coords_nm = calphas.coords / ANGSTROM_PER_NM
    features.update(conformation_arrays(conformational_properties(coords_nm, calphas.chain_lengths)))
    return cast(NmaFeatures, features)
