"""What a request may ask for, checked before any job is queued: FASTA text or uploads, sequences, property names
and mutants, within the server's limits. Every problem is an :class:`~seqdance.errors.InputError` of one line, as
the command line prints it.

Uploads are parsed from memory or from a temporary file whose name the server chooses; no name or path taken from a
request is ever used to read or write a file. Messages name an upload by its (sanitised) file name only.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from seqdance.app.settings import AppSettings
from seqdance.errors import InputError, SeqdanceError
from seqdance.schema import PROPERTY_NAMES, get_properties

_SHOWN_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
#: Structure files the B-factor mapping reads (by the suffix of the upload's name).
STRUCTURE_SUFFIXES = (".pdb", ".cif", ".ent", ".mmcif", ".pdb.gz", ".cif.gz", ".ent.gz", ".mmcif.gz")


@dataclass(frozen=True)
class Record:
    id: str
    sequence: str  # upper case, chains joined by ":"


def shown_name(name: str | None, default: str) -> str:
    """An upload's name for messages only: its last path component, odd characters removed, at most 80 long."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return _SHOWN_NAME.sub("_", base).strip()[:80] or default


@contextmanager
def server_file(data: bytes, suffix: str = ""):
    """``data`` in a temporary file named by the server (removed afterwards); yields its path."""
    with tempfile.TemporaryDirectory(prefix="seqdance-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        yield path


def scrub(message: str, path: str | os.PathLike[str], shown: str) -> str:
    """A message about a server-side temporary file, naming the upload instead (and on one line)."""
    text = str(message).replace(str(path), shown)
    return " ".join(text.split("\n")[0].split())


def parse_fasta(data: bytes, shown: str, settings: AppSettings) -> list[Record]:
    """FASTA records of an upload or pasted text (read as ``seqdance predict`` reads a file), checked."""
    from seqdance.io_utils import read_fasta

    if len(data) > settings.max_upload_bytes:
        raise InputError(f"{shown}: {len(data):,} bytes; this server takes at most {settings.max_upload_bytes:,} "
                         "per upload (--max-upload-mb)")
    if not data.strip():
        raise InputError(f"{shown}: empty; paste or upload sequences in FASTA format (lines '>id' then residues)")
    with server_file(data, ".fasta") as path:
        try:
            records = read_fasta(path)
        except SeqdanceError as exc:
            raise InputError(scrub(str(exc), path, shown)) from None
    return check_records([(r.id, r.sequence) for r in records], settings)


def check_records(pairs: Sequence[tuple[str, str]], settings: AppSettings) -> list[Record]:
    """(id, sequence) pairs within the limits and the model's vocabulary (errors name id and position)."""
    from seqdance.tokenizer import encode

    if not pairs:
        raise InputError("no sequence given")
    if len(pairs) > settings.max_sequences:
        raise InputError(f"{len(pairs)} sequences; this server takes at most {settings.max_sequences} per request "
                         "(--max-sequences)")
    records: list[Record] = []
    seen: set[str] = set()
    total = 0
    for seq_id, sequence in pairs:
        if not isinstance(sequence, str):
            raise InputError(f"sequence {seq_id!r}: expected a string of one-letter residue codes")
        if seq_id in seen:
            raise InputError(f"duplicate sequence id {seq_id!r}")
        seen.add(seq_id)
        text = "".join(sequence.split()).upper()
        encoded = encode(text, seq_id)  # SequenceError: names the id and the residue position
        length = int(sum(encoded.chain_lengths))
        if length > settings.max_residues:
            raise InputError(f"sequence {seq_id!r} has {length:,} residues; this server takes at most "
                             f"{settings.max_residues:,} residues per request (--max-residues)")
        total += length
        if total > settings.max_residues:
            raise InputError(f"the sequences hold more than {settings.max_residues:,} residues together; this server "
                             "takes at most that many per request (--max-residues)")
        records.append(Record(seq_id, text))
    return records


def json_records(body: object, settings: AppSettings) -> list[Record]:
    """Sequences of a JSON request: ``{"sequence": "..."}``, ``{"sequences": ["...", ...]}`` or
    ``{"sequences": [{"id": ..., "sequence": ...}, ...]}`` (ids default to seq0, seq1, ...)."""
    if not isinstance(body, dict):
        raise InputError('the request body must be a JSON object such as {"sequence": "MKT..."}')
    if ("sequence" in body) == ("sequences" in body):
        raise InputError('give either "sequence" (one) or "sequences" (a list), not both or neither')
    items = [body["sequence"]] if "sequence" in body else body["sequences"]
    if not isinstance(items, list):
        raise InputError('"sequences" must be a list')
    pairs: list[tuple[str, str]] = []
    for k, item in enumerate(items):
        if isinstance(item, dict):
            if "sequence" not in item:
                raise InputError(f'sequences[{k}]: no "sequence"')
            pairs.append((str(item.get("id", f"seq{k}")), item["sequence"]))
        else:
            pairs.append((f"seq{k}", item))
    return check_records(pairs, settings)


def property_names(value: object) -> list[str] | None:
    """Property names from a list or a space/comma-separated string; None (all) when empty."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [n for n in re.split(r"[\s,]+", value) if n]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value if n.strip()]
    else:
        raise InputError(f'"properties" must be a list of names (known: {", ".join(PROPERTY_NAMES)})')
    if not names:
        return None
    get_properties(names)  # InputError naming the unknown ones
    return list(dict.fromkeys(names))


def mutant_lines(text: str, settings: AppSettings) -> list[str]:
    """Mutants listed one per line (or separated by commas/spaces); '#' starts a comment."""
    mutants = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        mutants.extend(m for m in re.split(r"[\s,;]+", line) if m)
    if not mutants:
        raise InputError("no variants listed (one per line, e.g. A23G or A23G:L45P)")
    if len(mutants) > settings.max_variants:
        raise InputError(f"{len(mutants):,} variants; this server scores at most {settings.max_variants:,} per request")
    return mutants


def structure_suffix(name: str | None) -> str:
    """The format of an uploaded structure from its name's suffix (else an error listing the formats)."""
    lowered = (name or "").lower()
    for suffix in sorted(STRUCTURE_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return suffix
    raise InputError(f"{shown_name(name, 'the upload')}: not a structure file name (expected one of "
                     f"{', '.join(STRUCTURE_SUFFIXES)})")
