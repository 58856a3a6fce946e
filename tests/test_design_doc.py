"""docs/design.md, the project's reference of definitions: every link into it resolves, its anchors are unique, and
the numbers the code defines are the numbers it states (a changed constant fails here until the page says so)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DESIGN_DOC = REPO_ROOT / "docs" / "design.md"
SCANNED = ("src", "tests", "benchmarks", "configs", "docs", "README.md", "CITATION.cff", "pyproject.toml")

#: Anchors that references in the code and docs point to (the sections a "design.md#..." link may name).
REQUIRED_ANCHORS = (
    "overview", "property-schema", "md-features", "superposition", "sasa", "rmsf", "movement-correlation",
    "interactions", "interaction-frequencies", "input-kinds", "calpha-traces", "missing-properties", "backmapping",
    "hydrogens", "nma-features", "nma-structure", "conformational-properties", "flory-exponent", "dataset-layout",
    "targets", "checkpoint-layout", "splits", "model-architecture", "training", "source-groups", "loss",
    "loss-weights", "optimiser-and-schedule", "crops", "evaluation-metrics", "prediction-windows", "embeddings",
    "mutation-scores", "relative-change", "combined-score", "esm2-baselines", "long-proteins", "variant-alignment",
    "indel-change", "variant-comparison", "what-the-model-learned",
    "attention-metrics", "attention-paper", "embedding-probes", "published-numbers", "verification", "test-data",
    "deviations",
)


def _g(value: float) -> str:
    """A number as the page writes it: ``1e-6`` rather than Python's ``1e-06``."""
    written = f"{value:.0e}" if 0 < abs(value) < 1e-3 else f"{value:g}"
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", written)


def _text() -> str:
    return DESIGN_DOC.read_text()


def _anchors(text: str) -> list[str]:
    return re.findall(r'<a id="([^"]+)"></a>', text)


def test_anchors_are_unique_and_the_required_ones_exist() -> None:
    anchors = _anchors(_text())
    duplicates = sorted({a for a in anchors if anchors.count(a) > 1})
    assert not duplicates, f"anchors defined twice: {duplicates}"
    missing = sorted(set(REQUIRED_ANCHORS) - set(anchors))
    assert not missing, f"docs/design.md lacks the anchors {missing}"


def test_every_link_into_design_md_resolves() -> None:
    text = _text()
    anchors = set(_anchors(text))
    broken = [f"docs/design.md: #{a}" for a in re.findall(r"\]\(#([^)\s]+)\)", text) if a not in anchors]
    link = re.compile(r"design\.md#([a-z0-9-]+)((?:,\s*#[a-z0-9-]+)*)")
    for name in SCANNED:
        root = REPO_ROOT / name
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for path in paths:
            if path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".cff", ".sh") or path == DESIGN_DOC:
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                for m in link.finditer(line):
                    for anchor in [m.group(1), *re.findall(r"#([a-z0-9-]+)", m.group(2) or "")]:
                        if anchor not in anchors:
                            broken.append(f"{path.relative_to(REPO_ROOT)}:{number}: #{anchor}")
    assert not broken, "links to anchors docs/design.md does not define:\n  " + "\n  ".join(broken)


def test_the_schema_is_stated_as_the_code_defines_it() -> None:
    from seqdance import schema

    text = _text()
    tables = text[text.index('<a id="residue-properties">'):text.index('<a id="activations">')]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_0-9]+)`.*$", tables, flags=re.M)}
    for prop in schema.PROPERTIES:
        name = prop.name
        key = name if name in rows else f"{name[:-1]}1"  # nma_res1, nma_res2, nma_res3 share a row
        assert key in rows, f"{name} has no row in the schema tables of docs/design.md"
        row = rows[key]
        channels = (f"{prop.start}" if prop.width == 1 else f"{prop.start}–{prop.start + prop.width - 1}")
        assert re.search(rf"[| ,] ?{re.escape(channels)}(,| \|)", row), f"{name}: channels {channels} not in: {row}"
        word = {"softplus": "softplus", "sigmoid": "sigmoid", "softmax": "softmax",
                "signed_sigmoid": "2·sigmoid(x) − 1"}[prop.activation]
        assert word in row, f"{name}: activation {prop.activation} not in: {row}"
        if prop.transform == "cube_root":
            assert "cube root" in row
    assert f"Softplus(beta={schema.SOFTPLUS_BETA:g}, threshold={schema.SOFTPLUS_THRESHOLD:g})" in text
    assert "B, E, H, I, G, S, T, coil" in text and schema.SS_CLASSES == ("B", "E", "H", "I", "G", "S", "T", "coil")
    assert schema.N_RESIDUE_CHANNELS == 50 and schema.N_PAIR_CHANNELS == 13 and "(50 output channels)" in text


def test_feature_constants_are_the_stated_ones() -> None:
    pytest.importorskip("mdtraj", reason="the MD feature modules need mdtraj (the md extra)")
    from seqdance.features import conformation
    from seqdance.features.md.contact_geometry import (
        DEFAULT_VDW_RADIUS_ANGSTROM,
        DISULFIDE_SG_MAX,
        HYDROGEN_BOND_LENGTH_MAX,
        HYDROPHOBIC_NEIGHBOUR_RADIUS,
        RING_ATOMS,
        VDW_RADII_ANGSTROM,
        ContactCriteria,
    )
    from seqdance.features.md.properties import PEPTIDE_BOND_MAX_NM
    from seqdance.features.nma import modes as nma

    text = _text()
    c = ContactCriteria()
    stated = [
        f"< r(a) + r(b) + {c.vdw_epsilon} Å, residue gap ≥ {c.vdw_res_diff}",
        f"SG–SG < {DISULFIDE_SG_MAX} Å", f"within {HYDROPHOBIC_NEIGHBOUR_RADIUS} Å (first frame) are all C or H",
        f"distance ≤ {c.hbond_distance} Å",
        f"D–H···A ≥ {180 - c.hbond_angle:g}° (within {c.hbond_angle:g}° of linear)",
        f"nearest heavy atom within {HYDROGEN_BOND_LENGTH_MAX} Å", f"within {c.salt_bridge_distance} Å of a cation",
        f"within {c.pi_cation_distance} Å of an aromatic ring's centroid", f"vector ≤ {c.pi_cation_angle:g}°",
        f"centroids ≤ {c.pi_stack_distance} Å apart", f"normals ≤ {c.pi_stack_angle:g}°",
        f"centroid–centroid vector ≤ {c.pi_stack_psi:g}°", f"centroids ≤ {c.t_stack_distance} Å",
        f"90°\\| ≤ {c.t_stack_angle:g}°", f"same {c.t_stack_psi:g}° test",
        f"other elements {DEFAULT_VDW_RADIUS_ANGSTROM:.2f}",
        f"longer than {PEPTIDE_BOND_MAX_NM} nm",
    ]
    stated += [f"{element.capitalize()} {radius:.2f}" for element, radius in VDW_RADII_ANGSTROM.items()]
    stated += [f"{resname.capitalize()} {' '.join(atoms)}" if resname != "TYR" else "Phe and Tyr"
               for resname, atoms in RING_ATOMS.items()]
    stated = [s.replace("Phe CG CE1 CE2", "CG, CE1, CE2").replace("Trp CD2 CZ2 CZ3", "Trp CD2, CZ2, CZ3")
              .replace("His CG CE1 CD2", "His CG, CE1, CD2") for s in stated]
    (s1, g1), (s2, g2), (s3, g3) = nma.SPRING_SHELLS
    springs = f"γ = {g1:g} for d ≤ {s1:g} Å, {g2:g} for {s1:g} < d ≤ {s2:g} Å, {g3:g} for {s2:g} < d ≤ {s3:g} Å"
    stated += [springs,
               f"below {_g(nma.REFERENCE_ZERO_EIGENVALUE)} (absolute)", f"≤ {_g(nma.SINGULAR_RTOL)} σ",
               f"At least {nma.MIN_RESIDUES} Cα atoms", f"closer than {nma.MIN_CA_DISTANCE} Å",
               f"N^{conformation.RG_SCALING_EXPONENT}", f"separations s > {conformation.FLORY_MIN_SEPARATION}",
               f"(R0, ν) = ({conformation.FLORY_START[0]} nm, {conformation.FLORY_START[1]})"]
    absent = [s for s in stated if s not in text]
    assert not absent, f"docs/design.md does not state: {absent}"


def test_training_scoring_and_analysis_constants_are_the_stated_ones() -> None:
    from seqdance.analysis import attention
    from seqdance.scoring import combine, dynamics_score, windows
    from seqdance.scoring.options import DEFAULT_LOCAL_RADIUS
    from seqdance.store import options as split_options
    from seqdance.train import evaluate, weights
    from seqdance.train.config import DataConfig, OptimConfig, TrainConfig
    from seqdance.train.schedule import WarmupLinearDecay

    text = _text()
    o, d, t = OptimConfig(), DataConfig(), TrainConfig()
    rule = WarmupLinearDecay(total_updates=10_000)
    shares = weights.target_shares("md")
    nma_shares = weights.target_shares("nma")
    stated = [
        f"peak learning rate {_g(o.lr)}", f"betas ({o.betas[0]}, {o.betas[1]})", f"eps {_g(o.eps)}",
        f"weight decay {o.weight_decay}", f"clipping at {o.grad_clip_value}", f"dropout {t.dropout}",
        f"W = {o.warmup_updates:,} warm-up", f"D = int({o.decay_end_fraction} × total) and r = {o.final_lr_fraction}",
        f"{d.sequences_per_group} sequences per source group", f"M = {d.curriculum[0].max_tokens} for the first "
        f"{d.curriculum[0].until:.0%}", f"then {d.curriculum[-1].max_tokens:,}",
        f"at least {weights.BASELINE_FLOOR:.0%} of the largest baseline",
        f"exceeds {weights.MAX_WEIGHT_RATIO:g}× the group's median weight",
        f"|P_wt| + {dynamics_score.SCORE_EPSILON})", f"log(x_p + {_g(combine.GEOMETRIC_MEAN_EPS)})",
        f"`local_radius` ({DEFAULT_LOCAL_RADIUS})", f"1,022 // {windows.WINDOW_GRID_DIVISOR} = 63",
        f"j − i > {evaluate.MIN_SEPARATION}", f"|i − j| > {attention.NOTEBOOK_MIN_SEPARATION} and a valid target",
        f"pairs with |i − j| > {attention.PAPER_MIN_SEPARATION}", f"(f ≥ {attention.AUROC_POSITIVE_MIN})",
        f"all other pairs + {_g(attention.TOPL_EPSILON)})", f"identity ≥ {split_options.DEFAULT_IDENTITY}",
        f"covers ≥ {split_options.DEFAULT_COVERAGE} of **both**",
        f"{split_options.DEFAULT_TEST_FRACTION:.0%} of the clusters",
    ]
    absent = [s for s in stated if s not in text]
    assert not absent, f"docs/design.md does not state: {absent}"
    assert rule.warmup_updates == o.warmup_updates and rule.final_fraction == o.final_lr_fraction
    assert abs(shares["sasa_mean"] - 1 / 28) < 1e-12 and abs(shares["vdw"] - 1 / 16) < 1e-12
    assert abs(shares["corr"] - 3 / 16) < 1e-12 and "(1/16 each, `corr` 3/16)" in text and "(1/28 each)" in text
    assert abs(nma_shares["nma_res1"] - 1 / 12) < 1e-12 and abs(nma_shares["nma_pair1"] - 1 / 4) < 1e-12
    assert "(1/4 and 1/12)" in text


def test_citation_file_cites_the_paper_and_the_software() -> None:
    import yaml

    from seqdance import __version__

    data = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text())
    assert data["cff-version"] == "1.2.0" and data["type"] == "software" and data["version"] == __version__
    assert data["license"] == "MIT" and data["authors"] and data["message"]
    paper = data["preferred-citation"]
    assert paper["doi"] == "10.1073/pnas.2530466123" and paper["type"] == "article"
    assert [a["family-names"] for a in paper["authors"]] == ["Hou", "Zhao", "Shen"]
    assert any(ref["doi"] == "10.1101/2024.10.11.617911" for ref in data["references"])
    for entry in (paper, *data["references"]):  # CFF requires these keys of every reference
        assert {"type", "title", "authors"} <= set(entry)
