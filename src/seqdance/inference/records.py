"""The records of a FASTA file as a run uses them: read, checked and tokenised once.

Invalid records (characters outside the ESM2 vocabulary, empty chains) stop a run before any prediction, every
bad record listed by id, unless ``skip_invalid``: then they are left out and reported. The tokenised records
(:attr:`Records.encoded`) go to the run as they are, so no record is tokenised twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from seqdance.errors import InputError
from seqdance.io_utils import read_fasta
from seqdance.tokenizer import Encoded, SequenceError, encode


@dataclass
class Records:
    """Valid records in file order: ids, sequences as given, their tokens; ``skipped`` says what was left out."""

    ids: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    encoded: list[Encoded] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per invalid record left out


def read_records(path: str | os.PathLike[str], *, skip_invalid: bool = False, remove_gaps: bool = False) -> Records:
    """The FASTA records that tokenise; bad ones stop the run (listed by id) or, with ``skip_invalid``, are left
    out and named in :attr:`Records.skipped`."""
    records = Records()
    bad: list[str] = []
    for record in read_fasta(path, remove_gaps=remove_gaps):
        try:
            encoded = encode(record.sequence, record.id)
        except SequenceError as exc:
            bad.append(str(exc))
            continue
        records.ids.append(record.id)
        records.sequences.append(record.sequence)
        records.encoded.append(encoded)
    if bad and not skip_invalid:
        listed = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(f"{path}: {len(bad)} invalid record(s): {listed} (use --skip-invalid to skip them)")
    records.skipped = bad
    return records
