"""Counted nouns in what the commands print ("1 file", "2 files", "1,234 sequences"): one helper, so that no line
says "1 files" and every count is written the same way (thousands separated)."""

from __future__ import annotations

#: Plurals the rules below do not form.
_IRREGULAR: dict[str, str] = {"index": "indices", "datum": "data"}


def plural(noun: str) -> str:
    """The plural of ``noun`` (its last word: "protein x head row" -> "protein x head rows")."""
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        word = last + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def counted(count: int, noun: str, plural_form: str | None = None) -> str:
    """``count`` and ``noun`` in the number it takes: ``counted(1, "file")`` -> "1 file", ``counted(1234,
    "sequence")`` -> "1,234 sequences"."""
    return f"{count:,} {noun if count == 1 else (plural_form or plural(noun))}"
