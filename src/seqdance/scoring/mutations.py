"""Mutations: parsing and validation of ProteinGym-style mutants, plain lists and saturation scans.

A mutant is one or more substitutions joined by ``:`` (ProteinGym convention), each written
``<wild-type residue><position><mutant residue>``, e.g. ``A23G`` or ``A23G:L45P``. Positions are numbered so
that the first residue of the wild-type sequence has number ``offset`` (default 1, i.e. 1-based). Every
substitution is checked against the wild type; problems are reported with the row and the reason.

Where the caller accepts them (``indels=True``: ``score``, ``benchmark-dms``, ``compare``), a variant may also be
given as its full sequence (ProteinGym's ``mutated_sequence``, or a mutant text that is a sequence, as in
ProteinGym's indel files): a sequence of the wild type's length becomes the :class:`Variant` of its substitutions
(so it scores exactly as the same substitutions written ``A23G``), one of another length an
:class:`IndelVariant` aligned to the wild type (:mod:`seqdance.scoring.alignment`).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from seqdance.errors import InputError, SeqdanceError
from seqdance.io_utils import open_text_lines
from seqdance.scoring.alignment import Alignment, align_variant
from seqdance.tokenizer import AMINO_ACIDS

#: Separator of the substitutions of one multi-mutant (ProteinGym).
MUTANT_SEPARATOR = ":"
#: ProteinGym's column of full variant sequences.
MUTATED_SEQUENCE = "mutated_sequence"
_SUBSTITUTION = re.compile(r"^([A-Za-z])(-?\d+)([A-Za-z])$")
_STANDARD = frozenset(AMINO_ACIDS)


class MutationError(SeqdanceError, ValueError):
    """A mutant cannot be applied to the wild-type sequence; the message says why."""


@dataclass(frozen=True, order=True)
class Substitution:
    """One amino-acid substitution; ``index`` is 0-based into the wild-type sequence."""

    index: int
    wt: str
    mt: str

    def label(self, offset: int = 1) -> str:
        return f"{self.wt}{self.index + offset}{self.mt}"

    @property
    def is_synonymous(self) -> bool:
        return self.wt == self.mt


@dataclass(frozen=True)
class Variant:
    """A validated mutant of one wild type: its text as given and its substitutions sorted by position."""

    mutant: str
    substitutions: tuple[Substitution, ...]

    @property
    def n_mutations(self) -> int:
        return len(self.substitutions)

    @property
    def indices(self) -> tuple[int, ...]:
        """0-based positions of the non-synonymous substitutions."""
        return tuple(s.index for s in self.substitutions if not s.is_synonymous)

    @property
    def is_synonymous(self) -> bool:
        """True when the mutant sequence equals the wild type."""
        return all(s.is_synonymous for s in self.substitutions)

    @property
    def n_changes(self) -> int:
        """Non-synonymous substitutions (the ``n_mutations`` column of the score tables)."""
        return sum(not s.is_synonymous for s in self.substitutions)

    #: Residues a substitution variant inserts (none; see :class:`IndelVariant`).
    n_inserted = 0

    def apply(self, wild_type: str) -> str:
        """The mutant sequence."""
        seq = list(wild_type)
        for s in self.substitutions:
            seq[s.index] = s.mt
        return "".join(seq)

    @property
    def key(self) -> tuple[tuple[int, str], ...]:
        """Identity of the mutant sequence: (index, residue) of each non-synonymous change."""
        return tuple((s.index, s.mt) for s in self.substitutions if not s.is_synonymous)


@dataclass(frozen=True, eq=False)
class IndelVariant:
    """A variant of another length than its wild type: its text as given, its sequence and its alignment to the
    wild type (docs/design.md#variant-alignment). It offers what scoring reads of a :class:`Variant`."""

    mutant: str
    sequence: str
    alignment: Alignment = field(repr=False)
    offset: int = 1

    @property
    def substitutions(self) -> tuple[Substitution, ...]:
        """The aligned residues that differ (the insertions and deletions are in :attr:`alignment`)."""
        return tuple(Substitution(i, a, b) for i, a, b in self.alignment.substitutions())

    @property
    def n_mutations(self) -> int:
        return self.alignment.n_events()

    @property
    def n_changes(self) -> int:
        """Edit events: substitutions, deletion runs and insertion runs."""
        return self.alignment.n_events()

    @property
    def n_inserted(self) -> int:
        return self.alignment.n_inserted

    @property
    def indices(self) -> tuple[int, ...]:
        """0-based wild-type positions of the edits (an insertion: both wild-type neighbours)."""
        return self.alignment.sites()

    is_synonymous = False  # another length is never the wild type

    def apply(self, wild_type: str) -> str:
        """The variant's sequence."""
        return self.sequence

    @property
    def key(self) -> tuple:
        """Identity of the variant sequence."""
        return ("sequence", self.sequence)

    @property
    def description(self) -> str:
        """The edits, e.g. ``L10_K12del:A20_K21insGSG`` (:meth:`Alignment.describe`)."""
        return self.alignment.describe(self.offset)


#: A variant of either kind.
AnyVariant = Variant | IndelVariant
#: Variants whose alignment has fewer identical residue pairs than this share of the wild type are refused (a row
#: of another protein, or a typo read as a sequence).
MIN_VARIANT_IDENTITY = 0.5


def sequence_variant(label: str, sequence: str, wild_type: str, *, offset: int = 1) -> Variant | IndelVariant:
    """The variant given by its full sequence: the :class:`Variant` of its substitutions when it has the wild
    type's length, else an :class:`IndelVariant`; raises :class:`MutationError` for a character that is not an
    amino-acid letter, a residue it introduces that is not one of the 20 standard ones, or a sequence that is not a
    variant of this wild type."""
    seq = "".join(str(sequence).split()).upper()
    if not seq:
        raise MutationError("empty variant sequence")
    for k, ch in enumerate(seq):
        if not ch.isalpha() or not ch.isascii():
            raise MutationError(f"character {ch!r} at residue {k + 1} of the variant sequence is not an amino-acid "
                                "letter")
    alignment = align_variant(wild_type, seq)
    identical = sum(wild_type[i] == seq[j] for i, j in alignment.pairs)
    if identical < MIN_VARIANT_IDENTITY * len(wild_type):
        raise MutationError(f"the sequence ({len(seq)} residues) is not a variant of the wild type ({len(wild_type)} "
                            f"residues): only {identical} residues align identical")
    introduced = [(int(j), seq[j]) for i, j in alignment.columns if j >= 0 and (i < 0 or wild_type[i] != seq[j])]
    for j, residue in introduced:
        if residue not in _STANDARD:
            raise MutationError(f"residue {residue!r} at position {j + 1} of the variant sequence is not one of the 20 "
                                f"standard amino acids ({AMINO_ACIDS})")
    label = label.strip() or alignment.describe(offset) or seq
    if alignment.method == "positional":
        subs = tuple(Substitution(i, a, b) for i, a, b in alignment.substitutions())
        return Variant(label, subs)
    return IndelVariant(label, seq, alignment, offset)


_DELETION = re.compile(r"^([A-Za-z])(-?\d+)(?:_([A-Za-z])(-?\d+))?del$")
_INSERTION = re.compile(r"^(?:([A-Za-z])(-?\d+)|start)_(?:([A-Za-z])(-?\d+)|end)ins([A-Za-z]+)$")


def looks_like_edits(text: str) -> bool:
    """A mutant text with deletions or insertions in the notation outputs use (``L10_K12del``, ``A20_K21insGSG``)."""
    return "del" in text or "ins" in text


def apply_edits(text: str, wild_type: str, offset: int = 1) -> str:
    """The sequence a mutant in the notation of :meth:`seqdance.scoring.alignment.Alignment.describe` gives:
    substitutions (``A23G``), deletions (``L10del``, ``L10_K12del``) and insertions between two adjacent residues
    (``A20_K21insGSG``, ``start_M1insGS``, ``K98_endinsGS``) joined by ``:``; each checked against the wild type."""
    n = len(wild_type)
    edits: list[tuple[int, int, str]] = []  # (first, stop, replacement) on the wild type, 0-based

    def residue(letter: str, number: str) -> int:
        index = int(number) - offset
        if not 0 <= index < n:
            raise MutationError(f"position {number} is outside the sequence (residues {offset}..{offset + n - 1})")
        if wild_type[index] != letter.upper():
            raise MutationError(f"the wild-type residue at position {number} is {wild_type[index]}, not "
                                f"{letter.upper()}")
        return index

    for token in (t.strip() for t in text.strip().split(MUTANT_SEPARATOR)):
        if (m := _DELETION.match(token)) is not None:
            first = residue(m.group(1), m.group(2))
            last = residue(m.group(3), m.group(4)) if m.group(3) else first
            if last < first:
                raise MutationError(f"{token!r}: the deletion ends before it starts")
            edits.append((first, last + 1, ""))
        elif (m := _INSERTION.match(token)) is not None:
            left = residue(m.group(1), m.group(2)) if m.group(1) else -1
            right = residue(m.group(3), m.group(4)) if m.group(3) else n
            if right != left + 1:
                raise MutationError(f"{token!r}: an insertion goes between two adjacent residues")
            inserted = m.group(5).upper()
            bad = [c for c in inserted if c not in _STANDARD]
            if bad:
                raise MutationError(f"{token!r}: inserted residue {bad[0]!r} is not one of the 20 standard amino "
                                    "acids")
            edits.append((right, right, inserted))
        else:
            sub = parse_substitution(token, wild_type, offset)
            edits.append((sub.index, sub.index + 1, sub.mt))
    edits.sort()
    for (a0, a1, _), (b0, b1, _) in itertools.pairwise(edits):
        if b0 < a1 or (a0 == b0 and a1 == b1):
            raise MutationError(f"{text.strip()!r}: two edits touch the same residues")
    sequence = wild_type
    for first, stop, replacement in reversed(edits):
        sequence = sequence[:first] + replacement + sequence[stop:]
    return sequence


def looks_like_substitutions(text: str) -> bool:
    """A mutant text written as substitutions (``A23G``, ``A23G:L45P``), whether or not they fit a wild type."""
    tokens = [t.strip() for t in str(text).strip().split(MUTANT_SEPARATOR)]
    return bool(tokens) and all(_SUBSTITUTION.match(t) for t in tokens)


def looks_like_sequence(text: str) -> bool:
    """A mutant text that is a sequence (letters only, no position numbers), as in ProteinGym's indel files."""
    text = text.strip()
    return bool(text) and text.isalpha()


@dataclass(frozen=True)
class InvalidMutant:
    """A row that could not be used: 1-based data row number, the text given and why it is invalid."""

    row: int
    mutant: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.mutant!r}: {self.reason}"


@dataclass(frozen=True)
class MutantSet:
    """Result of validating a list of mutants: the valid variants with their row numbers, and the rest."""

    variants: list[Variant | IndelVariant]
    rows: list[int]  # 1-based data row of each valid variant
    invalid: list[InvalidMutant]


def check_wild_type(sequence: str, name: str = "wild type") -> str:
    """Upper-cased single-chain wild-type sequence; errors name the first bad character."""
    seq = "".join(sequence.split()).upper()
    if not seq:
        raise InputError(f"{name}: the sequence is empty")
    if ":" in seq:
        raise InputError(f"{name}: multi-chain sequences (':') are not supported for mutation scoring")
    for i, ch in enumerate(seq):
        if not ch.isalpha():
            raise InputError(f"{name}: character {ch!r} at residue {i + 1} is not an amino-acid letter")
    return seq


def parse_substitution(token: str, wild_type: str, offset: int = 1) -> Substitution:
    """Parse and check one substitution such as ``A23G`` against the wild type."""
    m = _SUBSTITUTION.match(token.strip())
    if m is None:
        raise MutationError(f"malformed substitution {token!r} (expected <wt><position><mutant>, e.g. A23G)")
    wt, number, mt = m.group(1).upper(), int(m.group(2)), m.group(3).upper()
    index = number - offset
    first, last = offset, offset + len(wild_type) - 1
    if not 0 <= index < len(wild_type):
        raise MutationError(f"position {number} is outside the sequence (residues {first}..{last})")
    if wild_type[index] != wt:
        raise MutationError(f"the wild-type residue at position {number} is {wild_type[index]}, not {wt}")
    if mt not in _STANDARD:
        raise MutationError(f"mutant residue {mt!r} is not one of the 20 standard amino acids ({AMINO_ACIDS})")
    return Substitution(index, wt, mt)


def parse_mutant(text: str, wild_type: str, offset: int = 1) -> Variant:
    """Parse and check one (multi-)mutant such as ``A23G:L45P``; raises :class:`MutationError`."""
    if not isinstance(text, str) or not text.strip():
        raise MutationError("empty mutant")
    tokens = [t for t in text.strip().split(MUTANT_SEPARATOR)]
    if any(not t.strip() for t in tokens):
        raise MutationError(f"empty substitution in {text!r} (substitutions are joined by '{MUTANT_SEPARATOR}')")
    subs = sorted(parse_substitution(t, wild_type, offset) for t in tokens)
    for a, b in itertools.pairwise(subs):
        if a.index == b.index:
            raise MutationError(f"position {a.index + offset} is substituted more than once")
    return Variant(text.strip(), tuple(subs))


def parse_mutants(
    mutants: Iterable[object],
    wild_type: str,
    *,
    offset: int = 1,
    mutated_sequences: Sequence[object] | None = None,
    indels: bool = False,
) -> MutantSet:
    """Validate every mutant against the wild type; invalid ones are collected, never silently dropped.

    When ``mutated_sequences`` is given (ProteinGym's ``mutated_sequence`` column), each must equal the
    wild type with the mutant applied. With ``indels``, a row whose mutant is not written as substitutions is read
    from its ``mutated_sequence`` (the mutant text is then its label), from the mutant text when that is a
    sequence, or from deletions and insertions written as outputs write them (``L10_K12del``, ``A20_K21insGSG``:
    :func:`apply_edits`); sequences of another length become :class:`IndelVariant` s (:func:`sequence_variant`).
    """
    variants: list[Variant | IndelVariant] = []
    rows: list[int] = []
    invalid: list[InvalidMutant] = []
    for i, text in enumerate(mutants):
        row = i + 1
        shown = "" if text is None or (isinstance(text, float) and text != text) else str(text)
        given = mutated_sequences[i] if mutated_sequences is not None else None
        given = given.strip() if isinstance(given, str) and given.strip() else None
        try:
            try:
                variant = parse_mutant(shown, wild_type, offset)
            except MutationError:
                if not indels or looks_like_substitutions(shown) or (
                        given is None and not looks_like_sequence(shown) and not looks_like_edits(shown)):
                    raise  # substitutions that do not fit the wild type stay invalid, whatever the sequence says
                if given is not None:  # the sequence is the variant; the mutant text is its label
                    sequence = given
                else:
                    sequence = apply_edits(shown, wild_type, offset) if looks_like_edits(shown) else shown
                variant = sequence_variant(shown, sequence, wild_type, offset=offset)
            else:
                if given is not None and given.upper() != variant.apply(wild_type):
                    raise MutationError("mutated_sequence does not equal the wild type with this mutant applied")
        except MutationError as exc:
            invalid.append(InvalidMutant(row, shown, str(exc)))
            continue
        variants.append(variant)
        rows.append(row)
    return MutantSet(variants, rows, invalid)


def saturation_mutants(wild_type: str, *, offset: int = 1) -> list[Variant]:
    """All single substitutions to the 20 standard amino acids (19 per standard residue), by position."""
    out: list[Variant] = []
    for index, wt in enumerate(wild_type):
        for mt in AMINO_ACIDS:
            if mt != wt:
                sub = Substitution(index, wt, mt)
                out.append(Variant(sub.label(offset), (sub,)))
    return out


def invalid_summary(invalid: Sequence[InvalidMutant], source: str, *, limit: int = 10) -> str:
    """A readable multi-line report of invalid rows (the first ``limit`` of them)."""
    lines = [f"{source}: {len(invalid)} invalid mutant(s):"]
    lines += [f"  {item}" for item in invalid[:limit]]
    if len(invalid) > limit:
        lines.append(f"  ... and {len(invalid) - limit} more")
    return "\n".join(lines)


def check_table_fields(text: str, sep: str, source: str | os.PathLike[str], *, first_line: int = 1) -> None:
    """Raise :class:`MutationError` naming the first line of a delimited table (header first) whose number of
    fields differs from the header's: an unquoted separator inside a value shifts the columns (pandas would
    silently take the extra leading field as the row index)."""
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    header = next(reader, None)
    if header is None:
        return
    for row in reader:
        if row and len(row) != len(header):
            lineno = first_line - 1 + reader.line_num
            raise MutationError(
                f"{source}: line {lineno} has {len(row)} fields but the header (line {first_line}) has "
                f"{len(header)}: a value holding an unquoted {'tab' if sep == chr(9) else repr(sep)} shifts the "
                "columns; quote such values or join the substitutions of a multi-mutant with ':' (A1G:L2P)"
            )


def with_mutant_column(table: pd.DataFrame) -> pd.DataFrame:
    """A table of variants with a ``mutant`` column: a table that has only ``mutated_sequence`` (ProteinGym's indel
    layout) gets ``mutant`` = its sequences, first (ProteinGym's own convention for indel files)."""
    if "mutant" in table.columns or MUTATED_SEQUENCE not in table.columns:
        return table
    table = table.copy()
    table.insert(0, "mutant", table[MUTATED_SEQUENCE].astype(str))
    return table


def read_mutations(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read mutants from a CSV/TSV with a ``mutant`` column (other columns kept) or a plain list.

    A table with a ``mutated_sequence`` column but no ``mutant`` one (ProteinGym's indel files) gets its
    ``mutant`` column from the sequences (:func:`with_mutant_column`).

    A plain list has one mutant per line; blank lines and lines starting with ``#`` are ignored. A file is
    read as a table when its first non-comment line contains a ``mutant`` column header. Every row of a table
    must have as many fields as the header: an unquoted separator inside a value (``A1G,L2P`` in a CSV) would
    shift the columns, so it is an error naming the line. Files may be gzip'd; they must be UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mutation file not found: {path}")
    numbered = [(n, ln.rstrip("\n\r")) for n, ln in open_text_lines(path)]
    content = [(n, ln) for n, ln in numbered if ln.strip() and not ln.lstrip().startswith("#")]
    if not content:
        raise MutationError(f"{path}: no mutants found")
    header_line, header = content[0]
    sep = "\t" if "\t" in header or path.suffix.lower() == ".tsv" else ","
    fields = [f.strip().strip('"').strip("'") for f in next(csv.reader([header], delimiter=sep))]
    if "mutant" in fields or MUTATED_SEQUENCE in fields:
        text = "\n".join(ln for _, ln in numbered[header_line - 1:])
        check_table_fields(text, sep, path, first_line=header_line)
        try:
            table = pd.read_csv(io.StringIO(text), sep=sep, comment=None, dtype={"mutant": str},
                                keep_default_na=False)
        except (pd.errors.ParserError, ValueError) as exc:
            raise MutationError(f"{path}: not a readable table ({' '.join(str(exc).split())})") from None
        table.columns = [str(c).strip() for c in table.columns]
        return with_mutant_column(table)
    if len(fields) > 1 and sep in header:
        raise MutationError(
            f"{path}: looks like a table (columns {fields[:6]}) but has no 'mutant' column; "
            "name the column with the mutants 'mutant'"
        )
    return pd.DataFrame({"mutant": [ln.strip() for _, ln in content]})
