"""What the pictures say, read from the figures themselves: the fixed scale of the interaction map, titles naming
the model, the damaging end of a score heat map, protein counts under the evaluation boxes, and labelled colour
bars on attention heat maps without a panel that repeats another."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_released_checkpoint

from seqdance.cli.main import main
from seqdance.io_utils import model_display_name, save_figure
from seqdance.schema import INTERACTION_NAMES


def _recorder(monkeypatch, module) -> dict[str, object]:
    """Replace ``module.save_figure`` by one that also keeps each figure, keyed by file name."""
    figures: dict[str, object] = {}

    def keep(figure, path, **kwargs):
        figures[Path(path).name] = figure
        return save_figure(figure, path, **kwargs)

    monkeypatch.setattr(module, "save_figure", keep)
    return figures


def _texts(figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text"))]


def test_model_display_name(tmp_path) -> None:
    (tmp_path / "runs" / "tiny_cpu" / "model").mkdir(parents=True)
    (tmp_path / "esm_small").mkdir()
    (tmp_path / "zenodo").mkdir()
    (tmp_path / "zenodo" / "update_60000.pt").write_bytes(b"")
    assert model_display_name(tmp_path / "runs" / "tiny_cpu" / "model") == "tiny_cpu/model"
    assert model_display_name(str(tmp_path / "runs" / "tiny_cpu" / "model") + "/") == "tiny_cpu/model"
    assert model_display_name(tmp_path / "esm_small") == "esm_small"
    assert model_display_name(tmp_path / "zenodo" / "update_60000.pt") == "zenodo/update_60000.pt"
    assert model_display_name("ChaoHou/ESMDance") == "ChaoHou/ESMDance"


def test_interaction_map_has_a_fixed_scale_and_says_its_largest_value(tmp_path, monkeypatch) -> None:
    """Near-zero interaction predictions (sum ~7e-6) used to fill an auto-scaled colour range and look like
    strong contacts; the scale is now 0-1 (a frequency) and the panel states the largest value."""
    from seqdance.display import plots

    figures = _recorder(monkeypatch, plots)
    rng = np.random.default_rng(0)
    n = 30
    values = {name: np.cbrt(rng.random((n, n)) * 7e-6 / 9) for name in INTERACTION_NAMES}
    values["corr"] = np.eye(n)
    plots.plot_pair_maps(tmp_path / "weak.pairs.png", values, (n,), title="weak")
    figure = figures["weak.pairs.png"]
    panel = next(ax for ax in figure.axes if ax.get_title().startswith("interactions"))
    norm = panel.images[0].norm
    assert norm.vmin == 0 and norm.vmax == 1
    largest = plots.summed_interactions(values)[~np.eye(n, dtype=bool)].max()
    assert f"largest: {largest:.2g}" in _texts(figure) and largest < 7e-6
    # values above 1 (reference-mode frequencies) widen the scale instead of saturating
    strong = {name: np.full((n, n), np.cbrt(0.5)) for name in INTERACTION_NAMES}
    plots.plot_pair_maps(tmp_path / "strong.pairs.png", strong, (n,))
    panel = next(ax for ax in figures["strong.pairs.png"].axes if ax.get_title().startswith("interactions"))
    assert panel.images[0].norm.vmax == pytest.approx(4.5)


def test_titles_name_the_model_not_its_folder(tmp_path, monkeypatch) -> None:
    from seqdance.display import plots
    from seqdance.inference.prediction import Prediction

    figures = _recorder(monkeypatch, plots)
    model = tmp_path / "runs" / "tiny_cpu" / "model"
    model.mkdir(parents=True)
    n = 12
    rng = np.random.default_rng(1)
    values = {"rmsf_nor": rng.random(n), "corr": np.eye(n)}
    prediction = Prediction(id="p1", sequence="M" * n, chain_lengths=(n,), values=values)
    plots.plot_prediction(prediction, tmp_path / "out", "p1", model=str(model))
    for name in ("p1.profiles.png", "p1.pairs.png"):
        title = figures[name]._suptitle.get_text()
        assert title.endswith("— tiny_cpu/model"), title


def test_score_heat_map_says_which_end_is_damaging(tmp_path, monkeypatch, capsys) -> None:
    from seqdance.scoring import heatmap

    figures = _recorder(monkeypatch, heatmap)
    model = write_released_checkpoint(tmp_path / "runs" / "dms" / "model", seed=7)
    png = tmp_path / "scan.png"
    base = ["score", "--model", str(model), "--sequence", "MKTAYIAKQRQISFVK", "--saturation", "--properties",
            "sasa_mean", "psi", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "scan.csv"), "--heatmap", str(png)]) == 0
    figure = figures["scan.png"]
    assert any(ax.get_ylabel() == "score (higher = fitter)\n▼ more damaging   ·   fitter ▲" for ax in figure.axes)
    assert figure.axes[0].get_title(loc="left") == "score of single substitutions — dms/model"
    assert main([*base, "-o", str(tmp_path / "c.csv"), "--heatmap", str(tmp_path / "c.png"), "--heatmap-column",
                 "change_psi"]) == 0
    assert any(ax.get_ylabel() == "change_psi (larger = more damaging)\n▼ milder   ·   more damaging ▲"
               for ax in figures["c.png"].axes)


def test_evaluation_boxes_show_their_protein_counts(tmp_path, monkeypatch) -> None:
    from seqdance.train import evaluate

    figures = _recorder(monkeypatch, evaluate)
    per_protein = pd.DataFrame({"group": ["md"] * 3 + ["nma"], "name": list("abcd"),
                                "r_rmsf_nor": [0.1, 0.2, np.nan, 0.3], "r_corr": [0.4, 0.5, 0.6, np.nan]})
    losses = pd.DataFrame({"group": ["md", "nma"], "property": [evaluate.TOTAL] * 2, "rmse": [1.0, 0.5],
                           "baseline_rmse": [1.1, 0.6]})
    result = evaluate.EvaluationResult(per_protein, losses, pd.DataFrame())
    evaluate.plot_result(result, tmp_path / "evaluation.png", title="tiny_cpu/model")
    figure = figures["evaluation.png"]
    ticks = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert ticks == ["md\nrmsf_nor\nn = 2", "md\ncorr\nn = 3", "nma\nrmsf_nor\nn = 1"]
    assert figure._suptitle.get_text() == "tiny_cpu/model"


def test_attention_heat_maps_label_their_colour_bar_and_skip_a_repeated_panel(tmp_path, monkeypatch) -> None:
    from seqdance.analysis import attention_report
    from seqdance.analysis.attention import METRIC_NAMES

    figures = _recorder(monkeypatch, attention_report)
    rng = np.random.default_rng(0)
    rows = [{"protein": p, "source": g, "group": g, "layer": layer, "head": head,
             **{m: rng.random() for m in METRIC_NAMES}}
            for p, g in [("a", "md"), ("b", "md"), ("c", "idr")] for layer in range(2) for head in range(3)]
    per_head = pd.DataFrame(rows)
    attention_report.write_attention_report(per_head, tmp_path / "two", title="ChaoHou/SeqDance")
    figure = figures["heatmap_interact_auroc.png"]
    panels = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["all (3 proteins)", "idr (1 protein)", "md (2 proteins)"]
    bar = next(ax for ax in figure.axes if not ax.images)
    assert bar.get_ylabel() == "median interact_auroc over proteins\n(0.5 = chance)"
    assert "ChaoHou/SeqDance" in figure._suptitle.get_text()
    attention_report.write_attention_report(per_head[per_head["group"] == "md"], tmp_path / "one", title="m")
    panels = [ax for ax in figures["heatmap_interact_auroc.png"].axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["md (all 2 proteins)"]  # "all" would repeat it
