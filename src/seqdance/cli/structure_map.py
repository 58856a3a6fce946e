"""``seqdance map``: a predicted per-residue property onto a structure (B-factors + ChimeraX attribute file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqdance.cli.options import add_output_file, add_quiet_option, finite_number
from seqdance.errors import InputError
from seqdance.schema import RESIDUE_PROPERTIES
from seqdance.wording import counted

#: Residue properties with one value per residue (what a B-factor holds).
_SCALAR_PROPERTIES = tuple(p.name for p in RESIDUE_PROPERTIES if p.width == 1)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "map",
        help="write a predicted per-residue property into a structure's B-factors (+ a ChimeraX attribute file)",
        description="Aligns each chain of the prediction to a chain of the structure by sequence, writes the "
        "property as the B-factor of every atom of the aligned residues (OUT.pdb or OUT.cif) and as a ChimeraX "
        "attribute file OUT.defattr (full precision: 'open OUT.defattr' then 'color byattribute "
        "seqdance_NAME'). Residues that differ between prediction and structure are reported.",
    )
    parser.add_argument("prediction", type=Path, help="a prediction file written by 'seqdance predict' (.npz)")
    parser.add_argument("-s", "--structure", type=Path, required=True, metavar="STRUCTURE",
                        help="PDB or mmCIF file (optionally .gz)")
    parser.add_argument("-p", "--property", default="rmsf_nor", choices=_SCALAR_PROPERTIES,
                        help="per-residue property to map (default: rmsf_nor)")
    add_output_file(parser, "structure", "structure file to write (format from the suffix)")
    parser.add_argument("--chain", default=None, metavar="A[,B]",
                        help="structure chain(s) for the prediction's chain(s), in order (default: best match)")
    parser.add_argument("--missing", type=finite_number, default=0.0, metavar="B",
                        help="B-factor of residues without a predicted value (default 0)")
    parser.add_argument("--scale", type=finite_number, default=1.0, metavar="F",
                        help="multiply the values written as B-factors (PDB keeps two decimals, from -99.99 to "
                        "999.99; a value beyond is an error; default 1)")
    add_quiet_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from seqdance.display.structure_map import ATTRIBUTE_PREFIX, map_property
    from seqdance.inference.prediction_io import load_prediction

    if not args.prediction.is_file():
        raise FileNotFoundError(f"prediction file not found: {args.prediction}")
    if not args.structure.is_file():
        raise FileNotFoundError(f"structure file not found: {args.structure}")
    prediction = load_prediction(args.prediction)
    if args.property not in prediction:
        raise InputError(f"{args.prediction} holds no {args.property!r} (it has: {', '.join(prediction)})")
    values = np.asarray(prediction[args.property], dtype=np.float64)
    chains = [c.strip() for c in args.chain.split(",") if c.strip()] if args.chain else None
    result = map_property(
        values, prediction.sequence, prediction.chain_lengths, args.structure, args.output,
        property_name=args.property, chains=chains, missing=args.missing, scale=args.scale,
    )
    for line in [m.summary() for m in result.matches] + result.unplaced:
        print(line, file=sys.stderr)
    scaled = "" if args.scale == 1 else f"{args.scale:g} × "
    print(f"wrote {result.output} (B-factor = {scaled}{args.property} on {counted(result.atoms_set, 'atom')} of "
          f"{counted(result.residues_set, 'residue')}; {args.missing:g} elsewhere) and {result.attribute_file} "
          "(ChimeraX: "
          f"open {result.attribute_file.name}; color byattribute {ATTRIBUTE_PREFIX}{args.property})")
    distinct = np.unique(values)
    if result.output.suffix.lower() == ".pdb" and len(distinct) > 10:
        kept = np.unique(np.round(args.scale * distinct, 2))
        if len(kept) < 0.5 * len(distinct):
            print(f"note: the PDB format keeps two decimals of a B-factor, which leaves {len(kept)} distinct "
                  f"values of {len(distinct)}; use --scale (e.g. 100), a .cif output or the .defattr file",
                  file=sys.stderr)
    return 0
