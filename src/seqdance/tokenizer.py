"""Offline ESM2 tokenizer giving exactly the ids of the ``facebook/esm2_*`` tokenizers.

Written by hand because the transformers tokenizer maps unknown or lower-case characters silently to
``<unk>``; here lower case is read as upper case and anything else outside the vocabulary is an error naming
the sequence and position. Multi-chain input joins chains with ``<eos><cls>`` (docs/design.md#property-schema).

Special tokens typed inside a sequence: ``<mask>`` and ``<unk>`` stand for one residue each (for programmatic
masking; every output stays aligned with them); the literal linker ``<eos><cls>`` (the released ``modify_seq``
form) separates chains like ``:``. Any other structural token (``<cls>``, ``<pad>``, ``<eos>``, ``<null_1>``) is an
error naming the sequence and position: it would shift every residue after it. FASTA files accept none of them
(:func:`seqdance.io_utils.read_fasta`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from seqdance.errors import SeqdanceError

if TYPE_CHECKING:  # torch is imported where tensors are made: reading a store needs no torch
    import torch

#: The 33-token ESM2 vocabulary, in id order (identical for every ESM2 size).
ESM2_VOCAB: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)
TOKEN_TO_ID: dict[str, int] = {tok: i for i, tok in enumerate(ESM2_VOCAB)}
CLS_ID = TOKEN_TO_ID["<cls>"]
PAD_ID = TOKEN_TO_ID["<pad>"]
EOS_ID = TOKEN_TO_ID["<eos>"]
UNK_ID = TOKEN_TO_ID["<unk>"]
MASK_ID = TOKEN_TO_ID["<mask>"]
SPECIAL_IDS: frozenset[int] = frozenset(TOKEN_TO_ID[t] for t in ESM2_VOCAB if t.startswith("<"))

#: The 20 standard amino acids in the conventional alphabetical one-letter order.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
AA_IDS: np.ndarray = np.array([TOKEN_TO_ID[a] for a in AMINO_ACIDS], dtype=np.int64)

CHAIN_SEPARATOR = ":"
LINKER: tuple[int, int] = (EOS_ID, CLS_ID)
#: Single-character residue tokens accepted in sequences.
_RESIDUE_CHARS = frozenset(t for t in ESM2_VOCAB if len(t) == 1)
_SPECIAL_IN_TEXT = re.compile(r"<[a-z_0-9]+>")
#: Special tokens that may stand for a residue inside a sequence.
RESIDUE_SPECIAL_TOKENS: tuple[str, ...] = ("<mask>", "<unk>")
#: The released ``modify_seq`` chain linker, read as the chain separator.
LINKER_TEXT = "<eos><cls>"


class SequenceError(SeqdanceError, ValueError):
    """A sequence contains something the tokenizer cannot encode."""


@dataclass(frozen=True)
class Encoded:
    """Token ids of one (possibly multi-chain) sequence and where its residues sit."""

    ids: np.ndarray  # (T,) int64: <cls> chain1 <eos><cls> chain2 ... <eos>
    residue_index: np.ndarray  # (L,) token position of each residue, in input order
    chain_lengths: tuple[int, ...]

    @property
    def n_residues(self) -> int:
        return int(self.residue_index.shape[0])


def split_chains(sequence: str | Sequence[str]) -> list[str]:
    """Chains of a sequence given as a list or as one string joined by ``:``."""
    if isinstance(sequence, str):
        return sequence.replace(LINKER_TEXT, CHAIN_SEPARATOR).split(CHAIN_SEPARATOR)
    return list(sequence)


def _chain_ids(chain: str, seq_id: str, offset: int) -> list[int]:
    ids: list[int] = []
    pos = 0
    text = "".join(chain.split())  # whitespace (line breaks in pasted sequences) is ignored, as HF does
    while pos < len(text):
        ch = text[pos]
        if ch == "<":
            m = _SPECIAL_IN_TEXT.match(text, pos)
            if m is None or m.group(0) not in TOKEN_TO_ID:
                raise SequenceError(
                    f"sequence {seq_id!r}: unknown token starting at residue {offset + len(ids) + 1}: "
                    f"{text[pos:pos + 10]!r}"
                )
            if m.group(0) not in RESIDUE_SPECIAL_TOKENS:
                raise SequenceError(
                    f"sequence {seq_id!r}: special token {m.group(0)!r} at residue {offset + len(ids) + 1} is not a "
                    f"residue; a sequence may hold {' and '.join(RESIDUE_SPECIAL_TOKENS)} only (join chains with "
                    f"'{CHAIN_SEPARATOR}')"
                )
            ids.append(TOKEN_TO_ID[m.group(0)])
            pos = m.end()
            continue
        up = ch.upper()
        if up not in _RESIDUE_CHARS:
            raise SequenceError(
                f"sequence {seq_id!r}: character {ch!r} at residue {offset + len(ids) + 1} is not an amino-acid "
                f"code of the ESM2 vocabulary ({''.join(sorted(c for c in _RESIDUE_CHARS if c.isalpha()))})"
            )
        ids.append(TOKEN_TO_ID[up])
        pos += 1
    return ids


def encode(sequence: str | Sequence[str], seq_id: str = "sequence") -> Encoded:
    """Encode one sequence (chains joined by ``:`` or given as a list) to ESM2 token ids.

    Raises :class:`SequenceError` naming ``seq_id`` and the 1-based residue position of a bad character.
    """
    chains = split_chains(sequence)
    ids: list[int] = [CLS_ID]
    residue_index: list[int] = []
    lengths: list[int] = []
    done = 0
    for c, chain in enumerate(chains):
        chain_ids = _chain_ids(chain, seq_id, done)
        if not chain_ids:
            raise SequenceError(f"sequence {seq_id!r}: chain {c + 1} is empty")
        if c > 0:
            ids.extend(LINKER)
        residue_index.extend(range(len(ids), len(ids) + len(chain_ids)))
        ids.extend(chain_ids)
        lengths.append(len(chain_ids))
        done += len(chain_ids)
    ids.append(EOS_ID)
    return Encoded(np.asarray(ids, dtype=np.int64), np.asarray(residue_index, dtype=np.int64), tuple(lengths))


def decode(ids: Sequence[int] | np.ndarray | torch.Tensor, *, keep_special: bool = False) -> str:
    """Inverse of :func:`encode` (special tokens dropped unless ``keep_special``; linkers become ``:``)."""
    out: list[str] = []
    arr = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
    for i, tok_id in enumerate(arr):
        if keep_special or tok_id not in SPECIAL_IDS or tok_id in (MASK_ID, UNK_ID):
            out.append(ESM2_VOCAB[tok_id])
        elif tok_id == EOS_ID and i + 1 < len(arr) and arr[i + 1] == CLS_ID:
            out.append(CHAIN_SEPARATOR)
    return "".join(out)


def pad_batch(encoded: Sequence[Encoded] | Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id arrays with ``<pad>``; returns ``(input_ids, attention_mask)`` as int64 tensors."""
    arrays = [e.ids if isinstance(e, Encoded) else np.asarray(e) for e in encoded]
    width = max(a.shape[0] for a in arrays)
    ids = np.full((len(arrays), width), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(arrays), width), dtype=np.int64)
    for row, a in enumerate(arrays):
        ids[row, : a.shape[0]] = a
        mask[row, : a.shape[0]] = 1
    import torch

    return torch.from_numpy(ids), torch.from_numpy(mask)


def residue_token_mask(ids: np.ndarray | torch.Tensor) -> np.ndarray:
    """Boolean mask of token positions that hold residues (not special tokens or padding)."""
    arr = ids.cpu().numpy() if hasattr(ids, "cpu") else np.asarray(ids)
    return ~np.isin(arr, list(SPECIAL_IDS - {MASK_ID, UNK_ID}))
