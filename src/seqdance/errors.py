"""The one base class of user-facing errors.

An error that derives from :class:`SeqdanceError` is the user's to fix (a malformed file, an unknown id, an
option out of range): the CLI prints its message on one line. Any other exception is a bug in seqdance and keeps
its traceback. Subclasses keep ``ValueError``, ``KeyError`` or ``OSError`` as a second base where callers catch
those.
"""

from __future__ import annotations


class SeqdanceError(Exception):
    """Base of every error whose message tells a user what is wrong with their input and what to do."""


class InputError(SeqdanceError, ValueError):
    """Input (a file, a sequence, an option) that seqdance cannot use; the message names it."""


class NonFiniteError(SeqdanceError, ValueError):
    """A NaN or infinite value (target, weight, loss, prediction, metric); the message names where it came from."""


class NotFoundError(SeqdanceError, KeyError):
    """A name (protein, property, record) that is not where the user said it is; the message names both."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnsafeFileError(SeqdanceError, ValueError):
    """A file that holds more than data (e.g. a pickle that would run code), or that points outside its folder.

    It is refused, never loaded: seqdance reads only tensors, arrays and plain containers from files.
    """
