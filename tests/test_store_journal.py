"""The build journal skips a damaged entry (it is recomputed) and lets anything else propagate."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from seqdance.store.journal import Journal


def _entry(journal: Journal, name: str) -> None:
    journal.write({"name": name, "ok": True}, np.zeros((3, 47), np.float32), np.zeros((3, 3, 10), np.float32))


@pytest.mark.parametrize("damage", ["truncated", "text", "no_record", "bad_json", "object_array"])
def test_damaged_entries_are_skipped_with_a_warning(tmp_path, caplog, damage) -> None:
    journal = Journal(tmp_path)
    _entry(journal, "good")
    _entry(journal, "bad")
    path = journal.path_for("bad")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "text":
        path.write_text("not an npz file\n")
    elif damage == "no_record":
        np.savez(path, residue=np.zeros(1))
    elif damage == "bad_json":
        np.savez(path, record=np.array("{not json"))
    else:
        np.savez(path, record=np.array([{"name": "bad"}], dtype=object))
    with caplog.at_level(logging.WARNING, logger="seqdance.store.journal"):
        records = journal.records()
    assert list(records) == ["good"]
    assert "ignoring unreadable journal entry" in caplog.text and path.name in caplog.text


def test_a_bug_while_reading_is_not_taken_for_damage(tmp_path, monkeypatch) -> None:
    journal = Journal(tmp_path)
    _entry(journal, "good")

    def broken(text: str) -> dict:
        raise TypeError("a programming error")

    monkeypatch.setattr(json, "loads", broken)
    with pytest.raises(TypeError, match="programming error"):
        journal.records()
