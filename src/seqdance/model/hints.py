"""What an error about an unobtainable hub model tells the user to do instead, in the caller's words.

The command line names a model with an option (such as ``--model``), Python and configs with an argument or a
key. A command says which option it is loading (:func:`model_option`), so that the hint names an option that
command has; without it the hint speaks Python. Light: no numeric library is imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_OPTION: ContextVar[tuple[str, str | None] | None] = ContextVar("seqdance_model_option", default=None)


@contextmanager
def model_option(option: str, select: str | None = None) -> Iterator[None]:
    """While a command loads a model named by ``option`` (e.g. ``--model``; ``select``: its option naming the kind
    of a training checkpoint, e.g. ``--model-select``), hints name those options."""
    token = _OPTION.set((option, select))
    try:
        yield
    finally:
        _OPTION.reset(token)


def local_copy_hint() -> str:
    """What to pass instead of a SeqDance/ESMDance hub id that cannot be downloaded."""
    named = _OPTION.get()
    if named is None:
        return ("Use a local copy instead: the path of a folder with config.json and model.safetensors, or of a "
                "training checkpoint update_N.pt of the paper's Zenodo record with model_select='esmdance' or "
                "'seqdance'; see docs/walkthrough.md")
    option, select = named
    checkpoint = f"{option} update_N.pt" + (f" {select} esmdance|seqdance" if select else "")
    return (f"Use a local copy instead: {option} LOCAL_DIR (a folder with config.json and model.safetensors) or "
            f"{checkpoint} (a training checkpoint of the paper's Zenodo record); see docs/walkthrough.md")


def local_esm2_hint() -> str:
    """What to pass instead of a ``facebook/esm2_*`` hub id that cannot be downloaded."""
    named = _OPTION.get()
    where = f"{named[0]} LOCAL_DIR" if named is not None else "its path in place of the hub id"
    return f"Use a local copy instead: a folder holding the facebook/esm2_* config.json and model.safetensors ({where})"
