"""Masked (missing) properties never reach loss weights, the training loss or evaluation
(docs/design.md#missing-properties).

A store mixes all-atom proteins with one-bead (Cα) proteins whose atom-level properties are masked and listed in
their provenance, as ``dataset build`` writes them: the weight statistics, the training loss and every evaluation
table must come from the proteins that have each property, and a protein lacking a property adds no term (not a
zero) anywhere.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from _store_fixtures import synthetic_features
from test_train_resume import tiny_config

from seqdance import schema
from seqdance.store import DynamicsStore, StoredProtein, StoreWriter, features_to_targets
from seqdance.train.data import Catalog, TrainPlan
from seqdance.train.evaluate import evaluate_model
from seqdance.train.loss import group_layout, group_loss, per_protein_rmse
from seqdance.train.trainer import Trainer
from seqdance.train.weights import compute_store_statistics, protein_baselines

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ATOM_LEVEL = tuple(p.name for p in schema.properties_of_kind("md") if p.name not in ("rmsf_nor", "corr"))
CA_PROPS = ("rmsf_nor", "corr")
#: name -> (sequence, label, one-bead?) ; every protein of group idr
PROTEINS = {
    "aa1": ("MKTAYIAKQRQISFVK", "train", False),
    "aa2": ("SHFSRQLEERLGLIEV", "train", False),
    "cg1": ("PEGSSPEKAGSGDSKQ", "train", True),
    "aa3": ("MDKLVNGTEWYRACHP", "test", False),
    "cg2": ("GSEPKSGEQSPSGDAK", "test", True),
    "cg3": ("SPGSEKPAGDSQGESK", "cgonly", True),
}


def write_mixed_store(path: Path, names: tuple[str, ...] = tuple(PROTEINS)) -> Path:
    with StoreWriter(path, compression=None) as writer:
        for k, name in enumerate(names):
            sequence, label, one_bead = PROTEINS[name]
            features = synthetic_features(sequence, "md", seed=k)
            features["missing_properties"] = ATOM_LEVEL if one_bead else ()
            residue, pair = features_to_targets(features, "md", name=name)
            source = "IDRome" if one_bead else "idr:all_atom_idrs"
            writer.add(StoredProtein(name, sequence, source, "idr", label, "md", residue, pair),
                       provenance={"input_kind": "calpha" if one_bead else "all_atom",
                                   "missing_properties": list(features["missing_properties"])})
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixed_store(tmp_path_factory.mktemp("mixed") / "mixed.h5")


def test_loss_weight_statistics_come_only_from_proteins_that_have_the_property(mixed: Path, tmp_path: Path) -> None:
    store = DynamicsStore.open(mixed)
    stats = compute_store_statistics(store, split="train", groups=["idr"])
    alone = compute_store_statistics(DynamicsStore.open(write_mixed_store(tmp_path / "aa.h5", ("aa1", "aa2"))),
                                     split="train", groups=["idr"])
    per_protein = {n: protein_baselines(store.read(n).residue, store.read(n).pair, "md") for n in ("aa1", "aa2", "cg1")}
    for name in ATOM_LEVEL:
        assert stats.n_proteins["idr"][name] == 2
        assert stats.baselines["idr"][name] == pytest.approx(alone.baselines["idr"][name], rel=1e-12)
        assert np.isnan(per_protein["cg1"][name])  # the masked protein has no baseline for it
    for name in CA_PROPS:
        assert stats.n_proteins["idr"][name] == 3
        assert stats.baselines["idr"][name] == pytest.approx(np.mean([per_protein[n][name] for n in per_protein]))
    atom_channels = np.concatenate([np.arange(schema.PROPERTY_BY_NAME[n].store_channels.start,
                                              schema.PROPERTY_BY_NAME[n].store_channels.stop)
                                    for n in ATOM_LEVEL if schema.PROPERTY_BY_NAME[n].level == "residue"])
    np.testing.assert_allclose(stats.residue_means["idr"][atom_channels], alone.residue_means["idr"][atom_channels])
    rmsf = schema.PROPERTY_BY_NAME["rmsf_nor"].store_channels.start
    assert stats.residue_means["idr"][rmsf] != pytest.approx(alone.residue_means["idr"][rmsf])  # cg1 counts here
    weights = stats.weights().for_group("idr")
    assert all(w > 0 for w in weights.values())


def test_plan_counts_only_proteins_that_have_each_property(mixed: Path) -> None:
    catalog = Catalog.from_stores([DynamicsStore.open(mixed)])
    row = {n: k for k, n in enumerate(catalog.names)}
    columns = [schema.PROPERTY_NAMES.index(n) for n in ATOM_LEVEL]
    assert catalog.missing is not None and catalog.missing[row["cg1"], columns].all()
    assert not catalog.missing[row["aa1"]].any()
    plan = TrainPlan(catalog, ["idr"], label="train", seed=0, sequences_per_group=3,
                     max_tokens_at=lambda u: 64, micro_batch_at=lambda u: 2)
    counts = dict(zip(group_layout("idr").property_names, plan.property_counts(1, "idr").tolist()))
    assert {counts[n] for n in ATOM_LEVEL} == {2} and {counts[n] for n in CA_PROPS} == {3}


def test_group_loss_divides_each_property_by_its_own_count() -> None:
    rmse = torch.tensor([[1.0, 4.0], [3.0, 0.0]])  # protein 2 lacks property 2 (RMSE 0, no valid entry)
    valid = torch.tensor([[True, True], [True, False]])
    out = group_loss(rmse, valid, torch.tensor([1.0, 1.0]), denominator=torch.tensor([2.0, 1.0]))
    assert out.property_loss.tolist() == [2.0, 4.0]  # not (4 + 0) / 2
    assert float(out.total) == 6.0
    evaluation = group_loss(rmse, valid, torch.tensor([1.0, 1.0]))
    assert evaluation.property_loss.tolist() == [2.0, 4.0]


def test_training_loss_leaves_masked_properties_out(mixed: Path, tmp_path: Path) -> None:
    config = tiny_config(mixed, tmp_path / "run", **{
        "total_updates": 1, "optim.warmup_updates": 0, "dropout": 0.0, "data.sequences_per_group": 3,
        "data.micro_batch_size": 2,
        "data.curriculum": [{"until": 1.0, "max_tokens": 64}], "data.groups": ["idr"],
    })
    trainer = Trainer(config)
    before = copy.deepcopy(trainer.model).eval()
    record = trainer.fit().history[0]
    store = DynamicsStore.open(mixed)
    per_property: dict[str, list[float]] = {n: [] for n in group_layout("idr").property_names}
    from seqdance import tokenizer

    with torch.no_grad():
        for name in ("aa1", "aa2", "cg1"):
            protein = store.read(name)
            ids = torch.as_tensor(tokenizer.encode(protein.sequence).ids)[None]
            out = before(ids, torch.ones_like(ids), pairs=True)
            rmse, valid = per_protein_rmse(out.residue, out.pair, torch.as_tensor(protein.residue)[None],
                                           torch.as_tensor(protein.pair)[None], "idr")
            for j, prop in enumerate(group_layout("idr").property_names):
                if valid[0, j]:
                    per_property[prop].append(float(rmse[0, j]))
    weights = trainer.weights.for_group("idr")
    expected_loss = 0.0
    for prop, values in per_property.items():
        assert len(values) == (3 if prop in CA_PROPS else 2)
        assert record[f"rmse/idr/{prop}"] == pytest.approx(np.mean(values), rel=1e-4), prop
        expected_loss += weights[prop] * np.mean(values)
    assert record["loss/idr"] == pytest.approx(expected_loss, rel=1e-4)


def test_a_property_no_protein_of_the_update_has_is_absent_from_the_log(tmp_path: Path) -> None:
    path = write_mixed_store(tmp_path / "cg_and_one.h5", ("aa1", "cg1", "cg2"))
    with DynamicsStore.open(path) as store:  # train on the two Cα proteins only (aa1 becomes test)
        assert set(store.index["label"]) == {"train", "test"}
    config = tiny_config(path, tmp_path / "run", **{
        "total_updates": 1, "optim.warmup_updates": 0, "data.sequences_per_group": 1, "data.micro_batch_size": 1,
        "data.curriculum": [{"until": 1.0, "max_tokens": 64}], "data.groups": ["idr"],
        "data.train_split": "test", "data.loss_weights": str(_uniform_weights(tmp_path / "w.csv")),
    })
    record = Trainer(config).fit().history[0]  # the one training protein of split "test" is cg2
    assert not any(f"rmse/idr/{n}" in record for n in ATOM_LEVEL)
    assert all(np.isfinite(record[f"rmse/idr/{n}"]) for n in CA_PROPS)
    assert np.isfinite(record["loss/idr"]) and record["loss/idr"] > 0


def _uniform_weights(path: Path) -> Path:
    from seqdance.train.weights import LossWeights

    table = {g: {p.name: 1.0 for p in schema.group_properties(g)} for g in schema.SOURCE_GROUPS}
    return LossWeights(table).write_csv(path)


def test_evaluate_never_sees_masked_properties(mixed: Path) -> None:
    from seqdance.model import DynamicsModel

    torch.manual_seed(0)
    model = DynamicsModel("tiny", "seqdance").eval()
    store = DynamicsStore.open(mixed)
    result = evaluate_model(model, [store], split="test", groups=["idr"], batch_size=2)
    assert result is not None
    rows = result.per_protein.set_index("name")
    for name in ATOM_LEVEL:
        assert np.isnan(rows.loc["cg2", f"rmse/{name}"]) and np.isfinite(rows.loc["aa3", f"rmse/{name}"])
    for name in CA_PROPS:
        assert np.isfinite(rows.loc["cg2", f"rmse/{name}"])
    assert np.isfinite(rows.loc["cg2", "r_rmsf_nor"]) and np.isfinite(rows.loc["cg2", "r_corr"])
    losses = result.losses.set_index("property")
    for name in ATOM_LEVEL:
        assert losses.loc[name, "n_proteins"] == 1
        assert losses.loc[name, "rmse"] == pytest.approx(rows.loc["aa3", f"rmse/{name}"])  # aa3 alone, not halved
    for name in CA_PROPS:
        assert losses.loc[name, "n_proteins"] == 2
    by_source = result.metrics_by_source.set_index(["source", "property"])
    assert by_source.loc[("IDRome", "rmsf_nor"), "n_proteins"] == 1

    # a split of one-bead proteins only: the atom-level losses are NaN (no protein has them), never 0
    only = evaluate_model(model, [store], split="cgonly", groups=["idr"], batch_size=2)
    assert only is not None
    losses = only.losses.set_index("property")
    for name in ATOM_LEVEL:
        assert losses.loc[name, "n_proteins"] == 0 and np.isnan(losses.loc[name, "rmse"])
    total = float(losses.loc["(weighted total)", "rmse"])
    assert total == pytest.approx(losses.loc["rmsf_nor", "rmse"] + losses.loc["corr", "rmse"])
    assert set(only.metrics["n_proteins"]) == {1} and only.metrics["median_r"].notna().all()
