"""``seqdance dataset labels``: the conformational properties stored per protein, as a label CSV for ``probe``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from seqdance.cli.options import STORE, add_output_file, add_quiet_option
from seqdance.errors import InputError
from seqdance.features.options import CONFORMATION_PROPERTIES as PROPERTY_NAMES
from seqdance.wording import counted

if TYPE_CHECKING:
    import pandas as pd


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "labels",
        help="export the stored conformational properties (Rg, Re, asphericity, scaled Rg, Flory nu) as a label CSV",
        description=(
            "One row per chain: name, sequence, the properties (nm; means and sds over frames for MD entries, one "
            "structure for NMA entries) and info_* columns (with --store-split also split_store). The file "
            "is ready for 'seqdance probe --labels'. Chains missing a selected property (nu of chains too short "
            "for the fit) are left out and counted. nu, the Flory exponent of R(s) = R0 s^nu, describes disordered "
            "chains; info_nu_r2 (the fit's R²) and info_nu_s_min/max (the fitted separations) stand beside it, and "
            "for folded chains the fit is formally defined but means nothing."
        ),
    )
    p.add_argument("store", type=Path, metavar=STORE, help="dataset store")
    p.add_argument("--index", type=Path, default=None, metavar="CSV", help="index CSV for a released-layout file")
    add_output_file(p, "csv", "label CSV to write")
    p.add_argument("--split", default=None, metavar="LABEL", help="only proteins with this split label (default: all)")
    p.add_argument("--groups", nargs="+", choices=("md", "idr", "nma"), help="only these source groups")
    p.add_argument("--properties", nargs="+", metavar="NAME", choices=PROPERTY_NAMES,
                   help=f"properties to export (default: all: {', '.join(PROPERTY_NAMES)})")
    p.add_argument("--store-split", action="store_true",
                   help="add a split_store column with the store's train/test labels (probe then uses that split "
                        "instead of its own clustered splits)")
    add_quiet_option(p)
    p.set_defaults(func=run_labels)


def run_labels(args: argparse.Namespace) -> int:
    from seqdance.io_utils import atomic_path
    from seqdance.store import DynamicsStore
    from seqdance.store.labels import conformation_table

    with DynamicsStore.open(args.store, index=args.index) as store:
        table, counts = conformation_table(store, split=args.split, groups=args.groups, properties=args.properties,
                                            store_split=args.store_split)
    if table.empty:
        reason = (f"{counted(counts['not_recorded'], 'protein')} were built before stores recorded them; rebuild them"
                  if counts["not_recorded"] else "no protein matches the selection")
        raise InputError(f"{args.store}: no conformational properties to export ({reason})")
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    notes = []
    if counts["incomplete_chains"]:
        notes.append(f"{counted(counts['incomplete_chains'], 'chain')} lacking a property left out")
    if counts["not_recorded"]:
        notes.append(f"{counted(counts['not_recorded'], 'protein')} without recorded properties (built before; "
                     "rebuild them)")
    print(f"wrote {args.output}: {counted(len(table), 'chain')} of {counted(counts['proteins'], 'protein')}"
          + (f"; {'; '.join(notes)}" if notes else ""), file=sys.stderr)
    if "nu" in table.columns:
        print(flory_note(table), file=sys.stderr)
    return 0


#: Below this R² a power law does not describe R(s): the chain is not behaving as a disordered polymer.
POOR_FIT_R2 = 0.9


def flory_note(table: pd.DataFrame) -> str:
    """What ν means, and how many of the exported chains it describes poorly (fit R² below POOR_FIT_R2)."""
    r2 = table["info_nu_r2"].astype(float)
    known = r2.notna()
    poor = int((r2[known] < POOR_FIT_R2).sum())
    quality = (f"{poor} of {int(known.sum())} chain(s) here fit with R² < {POOR_FIT_R2}"
               + (f" ({int((~known).sum())} recorded before the fit's R² was kept: rebuild them)" if (~known).any()
                  else ""))
    return ("note: nu is the Flory exponent of R(s) = R0 s^nu over separations s > 5 (columns info_nu_r2, "
            "info_nu_s_min, info_nu_s_max); it describes disordered chains, and for folded ones the fit is formally "
            f"defined but has no such meaning: {quality}")
