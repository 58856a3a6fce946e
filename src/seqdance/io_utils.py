"""Small I/O helpers shared by every command: atomic writes, checksums and FASTA reading."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seqdance.errors import SeqdanceError


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


def read_fasta(path: str | os.PathLike[str]) -> list[FastaRecord]:
    """Read a FASTA file; sequence lines are concatenated and whitespace removed.

    Raises :class:`FastaError` for sequence text before the first header, empty records and duplicate ids.
    """
    records: list[FastaRecord] = []
    header: str | None = None
    header_line = 0
    chunks: list[str] = []

    def flush() -> None:
        if header is None:
            return
        rec_id = header.split()[0] if header.split() else ""
        if not rec_id:
            raise FastaError(f"{path}: line {header_line}: empty FASTA header")
        seq = "".join(chunks)
        if not seq:
            raise FastaError(f"{path}: record {rec_id!r} (line {header_line}) has no sequence")
        records.append(FastaRecord(rec_id, header, seq))

    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                flush()
                header, header_line, chunks = line[1:].strip(), lineno, []
            elif header is None:
                raise FastaError(f"{path}: line {lineno}: sequence text before the first '>' header")
            else:
                chunks.append("".join(line.split()))
    flush()
    seen: set[str] = set()
    for rec in records:
        if rec.id in seen:
            raise FastaError(f"{path}: duplicate record id {rec.id!r}")
        seen.add(rec.id)
    return records


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
