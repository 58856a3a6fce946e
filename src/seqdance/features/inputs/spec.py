"""One input file as a user names it: a path, optionally followed by ``#selector`` for HDF5 files.

``file.h5#320/0`` picks temperature 320, replica 0 of an mdCATH file, ``file.h5#320`` every replica of 320 K.
:meth:`InputSpec.parse` is the one reader of that syntax (the trajectory readers, the feature-file fingerprints
and the dataset manifest all use it), and :meth:`InputSpec.record` the one description of an input that
fingerprints and store provenance keep: role, path as given, selector, SHA-256 and size.

Light on purpose (no numeric library): the command line parses inputs before any reader is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from seqdance.errors import InputError
from seqdance.io_utils import sha256_file

#: Suffixes of HDF5 files, the only files a ``#selector`` applies to.
HDF5_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5", ".hdf")


class MissingFileError(InputError, FileNotFoundError):
    """An input file that does not exist; the message names its role and path."""


@dataclass(frozen=True)
class InputSpec:
    """A file and the part of it to read (``selector``: ``""`` for the whole file)."""

    path: str
    selector: str = ""

    @classmethod
    def parse(cls, spec: InputSpecLike) -> InputSpec:
        """``file.h5#320/0`` -> InputSpec("file.h5", "320/0").

        The text after the last ``#`` is a selector only when the part before it names an HDF5 file
        (:data:`HDF5_SUFFIXES`) and the whole text is not itself an existing file; anywhere else ``#`` belongs to
        the file name (``run#1.dcd``).
        """
        if isinstance(spec, InputSpec):
            return spec
        text = os.fspath(spec)
        if "#" in text and not os.path.isfile(text):
            base, _, selector = text.rpartition("#")
            if base.lower().endswith(HDF5_SUFFIXES):
                parsed = cls(base, selector.strip())
                parsed.check_selector()
                return parsed
        return cls(text)

    def check_selector(self) -> None:
        """Raise :class:`InputError` unless the selector is empty, ``TEMPERATURE`` or ``TEMPERATURE/REPLICA``."""
        if not self.selector:
            return
        parts = self.selector.split("/")
        if len(parts) > 2 or not all(part.strip() for part in parts):
            raise InputError(f"{self}: the selector after '#' must be TEMPERATURE or TEMPERATURE/REPLICA "
                             f"(e.g. {self.path}#320/0), got {self.selector!r}")

    def __str__(self) -> str:
        return f"{self.path}#{self.selector}" if self.selector else self.path

    def resolved(self, base: str | os.PathLike[str]) -> InputSpec:
        """The same input with a relative path taken relative to folder ``base`` (``~`` expanded)."""
        path = Path(os.path.expanduser(self.path))
        return InputSpec(str(path if path.is_absolute() else Path(base) / path), self.selector)

    def require(self, role: str) -> None:
        """Raise naming ``role`` and the path when the file is missing, a directory or empty."""
        if not os.path.exists(self.path):
            raise MissingFileError(f"{role} file not found: {self.path}")
        if os.path.isdir(self.path):
            raise InputError(f"{role} path is a directory, not a file: {self.path}")
        if os.path.getsize(self.path) == 0:
            raise InputError(f"{role} file {self.path} is empty")

    def record(self, role: str) -> dict[str, Any]:
        """What a fingerprint or a store's provenance holds about this input: role, path as given (with its
        selector), selector, SHA-256 and size of the whole file."""
        if not os.path.isfile(self.path):
            raise MissingFileError(f"{role} file not found: {self.path}")
        return {"role": role, "path": str(self), "selector": self.selector, "sha256": sha256_file(self.path),
                "bytes": os.path.getsize(self.path)}


#: What functions taking an input accept: a path (with an optional ``#selector``) or an :class:`InputSpec`.
InputSpecLike = Union[str, "os.PathLike[str]", InputSpec]


def as_specs(inputs: InputSpecLike | list | tuple | None) -> list[InputSpec]:
    """One input or a list of them (``None``: none) as :class:`InputSpec` s."""
    if inputs is None:
        return []
    if isinstance(inputs, (str, os.PathLike, InputSpec)):
        return [InputSpec.parse(inputs)]
    return [InputSpec.parse(item) for item in inputs]
