"""Predict dynamic properties from sequences: tokenise, batch by length, run the model, strip special tokens.

The pipeline is: encode every sequence once (:func:`prepare_sequences`; errors name the sequence id before
anything runs) -> cut sequences longer than ``window`` residues into overlapping windows
(:mod:`seqdance.inference.windows`) -> batch inputs of similar length under a token budget
(:mod:`seqdance.inference.batching`) -> forward under ``torch.inference_mode`` -> keep the residue rows/columns
only (``<cls>``, ``<eos>``, chain linkers and padding dropped) -> split the 50 residue and 13 pair channels into
the schema's properties. :func:`iter_outputs` is that pipeline for any forward function: the embeddings of
:mod:`seqdance.inference.embeddings` (``embed``, ``probe``) go through it too, so windows, batching and merging
exist once.

Memory stays bounded: pair heads run in row blocks (``pair_block_rows``), batches with pair outputs are also
limited in pair cells, a long sequence is processed window by window and merged at once, and
:func:`iter_predictions` hands results out as soon as their batch is done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.errors import InputError, NonFiniteError
from seqdance.inference.batching import plan_batches
from seqdance.inference.prediction import Prediction
from seqdance.inference.windows import Window, WindowMerger, split_windows
from seqdance.schema import ESM2_MAX_RESIDUES, PAIR_PROPERTIES, RESIDUE_PROPERTIES, nonfinite_summary
from seqdance.tokenizer import Encoded, decode, encode, pad_batch

if TYPE_CHECKING:
    from seqdance.model.dynamics import DynamicsModel

#: One input sequence: a string (chains joined by ":") or a list of chain strings.
SequenceInput = str | Sequence[str]

#: Residues per window: ESM2 was trained on at most 1,024 tokens, i.e. <cls> + 1,022 residues + <eos>.
DEFAULT_WINDOW = ESM2_MAX_RESIDUES
DEFAULT_MAX_TOKENS_PER_BATCH = 4096


def _split_properties(residue: np.ndarray, pair: np.ndarray | None) -> dict[str, np.ndarray]:
    """Schema properties from the residue block (L, 50) and the pair block (13, L, L) (channels first)."""
    values: dict[str, np.ndarray] = {}
    for prop in RESIDUE_PROPERTIES:
        block = residue[:, prop.channels]
        values[prop.name] = np.ascontiguousarray(block[:, 0] if prop.width == 1 else block)
    if pair is not None:
        for prop in PAIR_PROPERTIES:
            values[prop.name] = pair[prop.start]  # contiguous (L, L) view of the channel-first block
    return values


def _take(tensor: torch.Tensor, dim: int, index: np.ndarray) -> torch.Tensor:
    """Positions ``index`` along ``dim``; a view when they are one contiguous run (single chains)."""
    start, n = int(index[0]), int(index.shape[0])
    if int(index[-1]) - start + 1 == n:
        return tensor.narrow(dim, start, n)
    return tensor.index_select(dim, torch.as_tensor(index, device=tensor.device))


def _select(tensor: torch.Tensor, index: np.ndarray, *, square: bool) -> np.ndarray:
    """Residue rows (and columns when ``square``) of one batch item as float32 numpy; pair maps (T, T, C)
    come out channels first, (C, n, n)."""
    if square:
        tensor = _take(_take(tensor.permute(2, 0, 1), 1, index), 2, index)
    else:
        tensor = _take(tensor, 0, index)
    result = tensor.to(dtype=torch.float32).contiguous()
    if result.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr():
        result = result.clone()  # never hand out a view that keeps the whole batch output alive
    return result.cpu().numpy()


@dataclass
class PreparedSequence:
    """One input sequence tokenised once and cut into its model windows (one window when it fits)."""

    index: int
    id: str
    encoded: Encoded
    windows: list[Window]

    @property
    def sequence(self) -> str:
        """The sequence as outputs record it (upper case, chains joined by ':')."""
        return decode(self.encoded.ids)


def _as_sequence_list(sequences: SequenceInput | Sequence[SequenceInput]) -> list[SequenceInput]:
    if isinstance(sequences, str):
        return [sequences]
    return list(sequences)


def prepare_sequences(
    sequences: SequenceInput | Sequence[SequenceInput] | None,
    *,
    ids: Sequence[str] | None = None,
    encoded: Sequence[Encoded] | None = None,
    window: int | None = DEFAULT_WINDOW,
    window_overlap: int | None = None,
) -> list[PreparedSequence]:
    """Tokenise every sequence (errors name its id before anything runs) and cut it into windows.

    ``encoded``: the sequences already tokenised (e.g. while validating a FASTA file); ``sequences`` is then not
    read. Pass the result as ``prepared`` to :func:`plan_prediction_batches` and :func:`iter_predictions` so that
    a run tokenises each sequence once.
    """
    if encoded is None:
        items = _as_sequence_list(sequences if sequences is not None else [])
        if ids is not None and len(ids) != len(items):
            raise InputError(f"got {len(ids)} ids for {len(items)} sequences")
        names = [str(ids[i]) if ids is not None else f"seq{i}" for i in range(len(items))]
        encoded = [encode(seq, name) for seq, name in zip(items, names)]
    else:
        if ids is not None and len(ids) != len(encoded):
            raise InputError(f"got {len(ids)} ids for {len(encoded)} encoded sequences")
        names = [str(ids[i]) if ids is not None else f"seq{i}" for i in range(len(encoded))]
    if window is not None and window_overlap is None:
        window_overlap = window // 2
    return [PreparedSequence(i, name, enc, split_windows(enc, window, window_overlap or 0))
            for i, (name, enc) in enumerate(zip(names, encoded))]


@dataclass(frozen=True)
class PlannedBatch:
    """One unit of work of a prediction run: a batch of sequences that fit one window each, or one long
    sequence (all its windows). ``inputs`` are the token lengths of its model inputs."""

    members: tuple[int, ...]  # input indices, in batch order
    inputs: tuple[int, ...]
    windowed: bool = False

    @property
    def tokens(self) -> int:
        """Model tokens, padding excluded."""
        return int(sum(self.inputs))

    def cost(self, *, quadratic: bool) -> float:
        """Estimated compute (:func:`seqdance.inference.sharding.input_cost`), padding included."""
        from seqdance.inference.sharding import input_cost

        if self.windowed:
            return sum(input_cost(t, quadratic=quadratic) for t in self.inputs)
        return len(self.inputs) * input_cost(max(self.inputs), quadratic=quadratic)


def _plan_jobs(jobs: Sequence[PreparedSequence], max_tokens: int, quadratic: bool) -> list[PlannedBatch]:
    short = [job for job in jobs if len(job.windows) == 1]
    lengths = [job.windows[0].ids.shape[0] for job in short]
    plan = [
        PlannedBatch(tuple(short[k].index for k in batch), tuple(lengths[k] for k in batch))
        for batch in plan_batches(lengths, max_tokens, quadratic=quadratic)
    ]
    for job in jobs:
        if len(job.windows) > 1:
            plan.append(PlannedBatch((job.index,), tuple(w.ids.shape[0] for w in job.windows), windowed=True))
    return plan


def plan_prediction_batches(
    sequences: SequenceInput | Sequence[SequenceInput] | None = None,
    *,
    ids: Sequence[str] | None = None,
    pairs: bool = True,
    attentions: bool = False,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    window: int | None = DEFAULT_WINDOW,
    window_overlap: int | None = None,
    prepared: Sequence[PreparedSequence] | None = None,
) -> list[PlannedBatch]:
    """The batches :func:`iter_predictions` runs for these arguments, in the order it runs them.

    Sequences that fit one window are batched by length (:mod:`seqdance.inference.batching`); each longer
    sequence is a unit of its own. Pass a subset of the plan's ``members`` lists as ``batches`` to
    :func:`iter_predictions` to compute exactly those batches (a shard of a run): every sequence is then computed
    in the same batch, with the same padding, as in a run over all of them.
    """
    if prepared is None:
        prepared = prepare_sequences(sequences, ids=ids, window=window, window_overlap=window_overlap)
    return _plan_jobs(prepared, max_tokens_per_batch, pairs or attentions)


def _check_batches(batches: Sequence[Sequence[int]], jobs: Sequence[PreparedSequence]) -> list[list[int]]:
    seen: set[int] = set()
    checked = []
    for batch in batches:
        members = [int(i) for i in batch]
        for i in members:
            if not 0 <= i < len(jobs):
                raise InputError(f"batch member {i} is not an input index (0..{len(jobs) - 1})")
            if i in seen:
                raise InputError(f"input {i} ({jobs[i].id!r}) appears in more than one batch")
            seen.add(i)
            if len(jobs[i].windows) > 1 and len(members) > 1:
                raise InputError(f"sequence {jobs[i].id!r} needs {len(jobs[i].windows)} windows: it must be a batch "
                                 "of its own")
        if members:
            checked.append(members)
    return checked


def check_model_device(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    """The device the model's parameters are on; ``device``, when given, must be it. A model is never moved
    behind its caller's back: move it with ``model.to(device)``, or give :func:`predict` a model source."""
    dev = model_device(model)
    if device is None:
        return dev
    wanted = torch.device(device)
    if wanted.type != dev.type or (wanted.index is not None and dev.index is not None and wanted.index != dev.index):
        raise InputError(f"the model is on {dev}, not {wanted}: move it first (model.to({str(wanted)!r})) or leave "
                         "device out to run where it is")
    return dev


#: Kinds of a forward's outputs: residue rows (B, T, ...), pair maps (B, T, T, C), every token (B, T, ...).
RESIDUE, PAIR, TOKENS = "residue", "pair", "tokens"
#: forward(input_ids, attention_mask) -> {name: (tensor, kind)} for one padded batch.
Forward = Callable[[torch.Tensor, torch.Tensor], dict[str, tuple[torch.Tensor, str]]]


def iter_outputs(
    forward: Forward,
    prepared: Sequence[PreparedSequence],
    batches: Sequence[Sequence[int]],
    *,
    max_tokens_per_batch: int,
    quadratic: bool,
    bar=None,
) -> Iterator[tuple[PreparedSequence, dict[str, np.ndarray]]]:
    """The one pipeline of every model output: run ``batches`` of ``prepared`` sequences through ``forward``,
    keep each input's residue rows (and columns), merge the windows of a long sequence by the
    most-central-window rule, refuse non-finite values; yield ``(sequence, arrays)`` per input.

    Arrays by kind: residue (L, ...); pair channels first (C, L, L); tokens (T, ...) over the parent's whole token
    sequence (``<cls>``, residues, chain linkers, ``<eos>``). Call it under ``torch.inference_mode()``.
    """
    kinds: dict[str, str] = {}

    def run(windows: list[Window], names: list[str], planned: bool = True
            ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Forward the given windows (in length-sorted batches, or as one batch when not ``planned``); yield
        (position in ``windows``, arrays). ``names`` name each window in errors."""
        lengths = [w.ids.shape[0] for w in windows]
        plan = plan_batches(lengths, max_tokens_per_batch, quadratic=quadratic) if planned else [range(len(windows))]
        for batch in plan:
            input_ids, attention_mask = pad_batch([windows[k].ids for k in batch])
            out = forward(input_ids, attention_mask)
            kinds.update({name: kind for name, (_, kind) in out.items()})
            for row, k in enumerate(batch):
                index = windows[k].residue_index
                arrays = {}
                for name, (tensor, kind) in out.items():
                    if kind == TOKENS:
                        arrays[name] = _select(tensor[row], np.arange(lengths[k]), square=False)
                    else:
                        arrays[name] = _select(tensor[row], index, square=kind == PAIR)
                check_finite_outputs(arrays, names[k])
                yield k, arrays
            del out

    for batch in batches:
        if len(prepared[batch[0]].windows) == 1:
            members = [prepared[i] for i in batch]
            for k, arrays in run([job.windows[0] for job in members], [job.id for job in members], planned=False):
                if bar is not None:
                    bar.update(1)
                yield members[k], arrays
            continue
        job = prepared[batch[0]]
        merger = WindowMerger(job.encoded.n_residues)
        tokens = WindowMerger(job.encoded.ids.shape[0] - 2)  # the parent's inner tokens
        ends: dict[str, list[np.ndarray]] = {}
        names = [f"{job.id} (window {w + 1} of {len(job.windows)})" for w in range(len(job.windows))]
        for k, arrays in run(job.windows, names):
            window = job.windows[k]
            residue_level = {n: a for n, a in arrays.items() if kinds[n] == RESIDUE}
            pair_level = {n: a for n, a in arrays.items() if kinds[n] == PAIR}
            merger.add(window, residue_level, pair_level)
            token_level = {n: a for n, a in arrays.items() if kinds[n] == TOKENS}
            if token_level:
                tokens.add(window.inner_tokens(), {n: a[1:-1] for n, a in token_level.items()}, {})
                for n, a in token_level.items():  # <cls> from the first window, <eos> from the last
                    ends.setdefault(n, [a[0], a[-1]])[1] = a[-1]
        merged = {**merger.residue, **merger.pair}
        for n, inner in tokens.residue.items():
            merged[n] = np.concatenate([ends[n][0][None], inner, ends[n][1][None]])
        if bar is not None:
            bar.update(1)
        yield job, merged


def iter_predictions(
    model: DynamicsModel,
    sequences: SequenceInput | Sequence[SequenceInput] | None,
    *,
    ids: Sequence[str] | None = None,
    pairs: bool = True,
    embeddings: bool = False,
    attentions: bool = False,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    device: str | torch.device | None = None,
    progress: bool | str = False,
    window: int | None = DEFAULT_WINDOW,
    window_overlap: int | None = None,
    pair_block_rows: int | None = None,
    batches: Sequence[Sequence[int]] | None = None,
    prepared: Sequence[PreparedSequence] | None = None,
) -> Iterator[tuple[int, Prediction]]:
    """Yield ``(input index, Prediction)`` as soon as each result is complete (batches run longest first).

    Same arguments as :func:`predict`; use this to write results out without holding all of them in memory.
    ``batches``: run exactly these batches of input indices, in this order, instead of planning them (see
    :func:`plan_prediction_batches`); inputs in no batch are not computed. ``prepared``: the sequences already
    tokenised by :func:`prepare_sequences` (``sequences`` is then not read). ``device``: where the model must
    already be (it is never moved, see :func:`check_model_device`).
    """
    jobs = prepared if prepared is not None else prepare_sequences(sequences, ids=ids, window=window,
                                                                   window_overlap=window_overlap)
    quadratic = pairs or attentions
    if batches is None:
        batches = [list(unit.members) for unit in _plan_jobs(jobs, max_tokens_per_batch, quadratic)]
    else:
        batches = _check_batches(batches, jobs)
    dev = check_model_device(model, device)

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
        out = model(input_ids.to(dev), attention_mask.to(dev), pairs=pairs, return_embeddings=embeddings,
                    return_attentions=attentions, pair_block_rows=pair_block_rows)
        arrays = {"residue": (out.residue, RESIDUE)}
        if pairs:
            arrays["pair"] = (out.pair, PAIR)
        if embeddings:
            arrays["embedding"] = (out.embeddings, RESIDUE)
        if attentions:
            arrays["attention"] = (out.attentions, PAIR)
        return arrays

    from tqdm.auto import tqdm

    label = progress if isinstance(progress, str) else "predict"  # a string progress names the bar
    bar = tqdm(total=sum(len(batch) for batch in batches), unit="sequence", desc=label, disable=not progress,
               dynamic_ncols=True)
    try:
        with eval_mode(model), torch.inference_mode():
            for job, arrays in iter_outputs(forward, jobs, batches, max_tokens_per_batch=max_tokens_per_batch,
                                            quadratic=quadratic, bar=bar):
                yield job.index, Prediction(
                    id=job.id,
                    sequence=job.sequence,
                    chain_lengths=job.encoded.chain_lengths,
                    values=_split_properties(arrays["residue"], arrays.get("pair")),
                    embedding=arrays.get("embedding"),
                    attention_maps=arrays.get("attention"),
                    n_windows=len(job.windows),
                )
    finally:
        bar.close()


def check_finite_outputs(arrays: dict[str, np.ndarray], name: str) -> None:
    """Refuse NaN or infinite model outputs of one sequence, naming it and the property (never written out)."""
    for key, values in arrays.items():
        if np.isfinite(values).all():
            continue
        if key == "residue":
            where = nonfinite_summary(values, "residue")
        elif key == "pair":  # channels first here
            where = nonfinite_summary(np.moveaxis(values, 0, -1), "pair")
        else:
            where = f"{key}: {int((~np.isfinite(values)).sum())} NaN/inf value(s)"
        raise NonFiniteError(
            f"sequence {name!r}: the model predicts non-finite values ({where}); nothing was written for it "
            "(broken weights, or float16 overflow: use float32)"
        )


def predict(
    model: DynamicsModel | str | os.PathLike[str],
    sequences: SequenceInput | Sequence[SequenceInput],
    *,
    ids: Sequence[str] | None = None,
    pairs: bool = True,
    embeddings: bool = False,
    attentions: bool = False,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    device: str | torch.device | None = None,
    progress: bool | str = False,
    window: int | None = DEFAULT_WINDOW,
    window_overlap: int | None = None,
    pair_block_rows: int | None = None,
) -> list[Prediction]:
    """Predict the dynamic properties of each sequence; one :class:`Prediction` per input, in input order.

    Args:
        model: a :class:`DynamicsModel`, or a source for :func:`seqdance.load_model` (HF repo id or local path).
        sequences: one sequence or a list of them; a sequence is a string (chains joined by ``:``) or a list
            of chain strings. Chains are joined with the ``<eos><cls>`` linker.
        ids: names for the results (default ``seq0``, ``seq1``, ...); they also name bad sequences in errors.
        pairs: predict the 13 pair properties; ``False`` runs the residue-only path (SDPA attention, no maps).
        embeddings / attentions: also return ``.embedding`` (L, d) / ``.attention`` (L, L, layers*heads).
        max_tokens_per_batch: padded tokens per batch; with pairs or attentions a batch also holds at most
            ``max_tokens_per_batch * 256`` pair cells. A single longer input still runs, alone.
        device: where to run. A model source is loaded there; a loaded model must already be there (it is never
            moved behind your back; default: where the model is).
        progress: show a tqdm bar over sequences.
        window: residues (tokens between ``<cls>`` and ``<eos>``) per model input; longer sequences are
            predicted in overlapping windows merged by the most-central-window rule
            (:mod:`seqdance.inference.windows`). ``None`` never cuts (beyond 1,022 this extrapolates).
        window_overlap: tokens shared by consecutive windows (default ``window // 2``); pairs up to this far
            apart always share a window, farther pairs may be NaN.
        pair_block_rows: rows of the pair map computed at a time (bounds the memory of the pair head;
            default: chosen by the model so one block's intermediate stays near 128 MB).

    Raises:
        seqdance.tokenizer.SequenceError: a sequence has a character outside the ESM2 vocabulary (names its id).
    """
    if isinstance(model, (str, os.PathLike)):
        from seqdance.model import load_model

        model = load_model(model, device=device)
    results: list[Prediction | None] = [None] * len(_as_sequence_list(sequences))
    for index, prediction in iter_predictions(
        model,
        sequences,
        ids=ids,
        pairs=pairs,
        embeddings=embeddings,
        attentions=attentions,
        max_tokens_per_batch=max_tokens_per_batch,
        device=device,
        progress=progress,
        window=window,
        window_overlap=window_overlap,
        pair_block_rows=pair_block_rows,
    ):
        results[index] = prediction
    return results  # type: ignore[return-value]
