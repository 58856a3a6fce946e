"""Small I/O helpers shared by every command: atomic writes, checksums, FASTA reading and Markdown tables."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import logging
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqdance.errors import InputError, SeqdanceError

if TYPE_CHECKING:
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` atomically.

    A crash (or kill -9) leaves at most a ``.tmp`` file that never looks like a finished output.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, _default_file_mode())  # mkstemp makes 0600 files; outputs get the usual umask mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def read_csv_table(path: str | os.PathLike[str], **kwargs: object):  # -> pandas.DataFrame
    """``pandas.read_csv`` of a user's file (UTF-8, with or without a byte-order mark); a malformed or non-UTF-8
    file is an :class:`~seqdance.errors.InputError` naming it."""
    import pandas as pd

    kwargs.setdefault("encoding", "utf-8-sig")
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV table ({' '.join(str(exc).split())})") from None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FastaRecord:
    id: str
    description: str
    sequence: str


class FastaError(SeqdanceError, ValueError):
    """A FASTA file is malformed; the message names the file, line and record."""


#: Alignment gap characters: not residues. ``read_fasta`` refuses them unless asked to remove them.
GAP_CHARACTERS = "-."
_GZIP_MAGIC = b"\x1f\x8b"
_SPECIAL_TOKEN = re.compile(r"<[^<>\s]{0,20}>?")


def open_text_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, gzip'd or not (detected from its first bytes); a leading
    byte-order mark is dropped. Bytes that are not UTF-8 raise :class:`~seqdance.errors.InputError` naming file,
    line and column."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(
                        f"{path}: line {lineno}, column {exc.start + 1}: byte 0x{raw[exc.start]:02x} is not UTF-8 "
                        "text; save the file as UTF-8 (or plain ASCII)"
                    ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: damaged or truncated gzip file ({exc or type(exc).__name__})") from None


def read_fasta(path: str | os.PathLike[str], *, remove_gaps: bool = False) -> list[FastaRecord]:
    """Read a FASTA file (plain or gzip'd, UTF-8 with or without a byte-order mark); sequence lines are
    concatenated and whitespace removed.

    Raises :class:`FastaError` naming file, line and record for sequence text before the first header, empty
    records, duplicate ids, special tokens typed into a sequence (``<mask>``, ``<pad>``, ...: FASTA sequences hold
    residues only) and alignment gaps (``-``, ``.``) — unless ``remove_gaps``, which drops the gaps.
    """
    records: list[FastaRecord] = []
    header: str | None = None
    header_line = 0
    chunks: list[str] = []
    chunk_lines: list[int] = []

    def where(rec_id: str, seq: str, index: int) -> str:
        """Record, residue position (1-based, chain separators not counted) and line of ``seq[index]``."""
        residue = index - seq.count(":", 0, index) + 1
        line, start = chunk_lines[0], 0
        for text, lineno in zip(chunks, chunk_lines):
            if start + len(text) > index:
                line = lineno
                break
            start += len(text)
        return f"{path}: record {rec_id!r}, residue {residue} (line {line})"

    def flush() -> None:
        if header is None:
            return
        rec_id = header.split()[0] if header.split() else ""
        if not rec_id:
            raise FastaError(f"{path}: line {header_line}: empty FASTA header")
        seq = "".join(chunks)
        special = _SPECIAL_TOKEN.search(seq)
        if special is not None or ">" in seq:
            index = special.start() if special is not None else seq.index(">")
            token = special.group(0) if special is not None else ">"
            raise FastaError(
                f"{where(rec_id, seq, index)}: {token!r} is not a residue: FASTA sequences hold one-letter residue "
                "codes only (special tokens such as <mask> or <pad> cannot be typed in; mask residues in Python "
                "with seqdance.tokenizer instead)"
            )
        gap = next((i for i, ch in enumerate(seq) if ch in GAP_CHARACTERS), None)
        if gap is not None:
            if not remove_gaps:
                raise FastaError(
                    f"{where(rec_id, seq, gap)}: alignment gap {seq[gap]!r}; give unaligned sequences, or remove the "
                    "gaps (CLI: --remove-gaps)"
                )
            seq = "".join(ch for ch in seq if ch not in GAP_CHARACTERS)
        if not seq.replace(":", ""):
            raise FastaError(f"{path}: record {rec_id!r} (line {header_line}) has no sequence")
        records.append(FastaRecord(rec_id, header, seq))

    for lineno, raw in open_text_lines(path):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            flush()
            header, header_line, chunks, chunk_lines = line[1:].strip(), lineno, [], []
        elif header is None:
            raise FastaError(f"{path}: line {lineno}: sequence text before the first '>' header")
        else:
            chunks.append("".join(line.split()))
            chunk_lines.append(lineno)
    flush()
    if not records:
        raise FastaError(f"{path}: no FASTA records (no line starting with '>')")
    seen: set[str] = set()
    for rec in records:
        if rec.id in seen:
            raise FastaError(f"{path}: duplicate record id {rec.id!r}")
        seen.add(rec.id)
    return records


def save_figure(figure: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write a matplotlib figure atomically, in the format its suffix names (PNG when it has none)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, dpi=dpi, format=target.suffix.lstrip(".").lower() or "png")
    return target


#: Folder and file names that say nothing about which model they hold (what `train` and `finetune` write, and
#: the usual names of saved weights): a picture titled with one of them names its parent folder too.
_GENERIC_MODEL_NAMES = frozenset({"model", "models", "final", "best", "checkpoint", "checkpoints", "weights",
                                  "model.safetensors", "pytorch_model.bin"})


def model_display_name(source: str | os.PathLike[str]) -> str:
    """How a picture's title names a model: a hub id as given; a local folder or file by its name, with its
    parent's when the name alone is generic (``runs/tiny_cpu/model`` -> ``tiny_cpu/model``)."""
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists():
        return text
    resolved = path.resolve()
    name = resolved.name or text
    if name.lower() in _GENERIC_MODEL_NAMES or name.lower().startswith(("checkpoint", "update_")):
        return f"{resolved.parent.name}/{name}" if resolved.parent.name else name
    return name


def markdown_table(frame: pd.DataFrame, float_format: str = "{:.4f}") -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (non-finite floats as "–"; no extra dependency)."""
    import numpy as np

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "–" if not np.isfinite(v) else float_format.format(v)
        return str(v)

    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


@contextlib.contextmanager
def c_stdout_to_log(logger: logging.Logger, *, level: int = logging.DEBUG) -> Iterator[None]:
    """Send what C code prints to the process's standard output during the block to ``logger`` instead.

    Some readers (VMD's DCD plugin inside MDTraj) print from C straight to file descriptor 1, which Python's
    ``sys.stdout`` redirection and ``-q`` cannot reach; the descriptor itself is pointed at a temporary file
    for the block and restored after. Keep the block short: the redirection is process-wide.
    """
    import sys

    libc = _libc()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    if libc is not None:
        libc.fflush(None)
    try:
        saved = os.dup(1)
    except OSError:  # no standard output at all
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            if libc is not None:
                libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace").strip()
            if text:
                logger.log(level, "%s", text)


def _libc():  # the C library, to flush its stdout buffer around a redirection (None where unavailable)
    import ctypes

    try:
        return ctypes.CDLL(None)
    except OSError:
        return None
