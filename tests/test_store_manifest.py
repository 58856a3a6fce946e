"""Manifest parsing: columns, relative paths, source groups, options, errors naming the row; shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqdance.store.manifest import ManifestError, parse_shard, read_manifest, shard_of


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data" / "manifest.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_parses_md_and_nma_rows_with_relative_paths(tmp_path) -> None:
    path = _write(tmp_path, (
        "name,source,structure,topology,trajectory,stride,chains,label,group\n"
        "a,proteinflow_pdb,pdb/a.pdb,,,,\"A,B\",,\n"
        "b,mdCATH,,top/b.pdb,traj/b1.xtc; traj/b2.xtc ,5,,test,\n"
        "c,idr:my_cg,,/abs/c.pdb,/abs/c.dcd,,,,\n"
        "d,my_lab_sims,,d.pdb,d.dcd,,,,md\n"
    ))
    entries = read_manifest(path)
    a, b, c, d = entries
    assert (a.kind, a.group, a.structure, a.options) == ("nma", "nma", path.parent / "pdb/a.pdb",
                                                         {"chains": ["A", "B"]})
    assert (b.kind, b.group, b.label) == ("md", "md", "test")
    assert b.trajectories == (path.parent / "traj/b1.xtc", path.parent / "traj/b2.xtc")
    assert b.options == {"stride": 5} and b.row == 1
    assert (c.group, c.topology) == ("idr", Path("/abs/c.pdb"))
    assert (d.source, d.group) == ("my_lab_sims", "md")
    assert [role for role, _ in b.inputs] == ["topology", "trajectory", "trajectory"]
    assert b.spec() != a.spec() and b.spec()["options"] == {"stride": 5}


def test_back_mapping_and_hydrogen_columns_become_options_without_defaults(tmp_path) -> None:
    """Per-row input options (docs/design.md#input-kinds): only values other than the defaults enter a protein's options
    (and so its spec), so a column of defaults recomputes nothing and a changed value recomputes that protein; an
    ensemble may be its own trajectory."""
    path = _write(tmp_path, (
        "name,source,topology,trajectory,backmap,backmap_properties,add_hydrogens,hydrogen_ph,hydrogen_forcefield\n"
        "cg,IDRome,cg.pdb,cg.dcd,,,,,\n"
        "bm,IDRome,cg.pdb,cg.dcd,pulchra,all,,6.5,\n"
        "ped,PED,ens.pdb,,none,,yes,7,none\n"
        "aa,ATLAS,aa.pdb,aa.dcd,,reproduced,no,,amber14\n"
    ))
    cg, bm, ped, aa = read_manifest(path)
    assert cg.options == {} and aa.options == {}
    assert bm.options == {"backmap": "pulchra", "backmap_properties": "all", "hydrogen_ph": 6.5}
    assert ped.options == {"add_hydrogens": True, "hydrogen_forcefield": "none"}
    assert ped.trajectories == () and [role for role, _ in ped.inputs] == ["topology"]
    plain = _write(tmp_path, "name,source,topology,trajectory\ncg,IDRome,cg.pdb,cg.dcd\n")
    assert read_manifest(plain)[0].spec() == cg.spec()  # adding empty/default columns changes no spec
    assert bm.spec()["options"] != cg.spec()["options"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,structure\na,x.pdb\n", "'source' column"),
        ("name,source\na,ATLAS\n", "'structure' column"),
        ("name,source,structure\na,ATLAS,x.pdb\n", r"row 2 \(a\).*group 'md'"),
        ("name,source,structure\na,proteinflow_pdb,x.pdb\na,proteinflow_pdb,y.pdb\n", r"row 3 \(a\): duplicate"),
        ("name,source,structure\na,somewhere,x.pdb\n", r"row 2 \(a\): unknown data source"),
        ("name,source,structure,topology\na,proteinflow_pdb,x.pdb,t.pdb\n", "not both"),
        ("name,source,topology,trajectory\na,ATLAS,,t.dcd\n", "MD entries need a 'topology'"),
        ("name,source,topology,trajectory,backmap\na,IDRome,t.pdb,t.dcd,cg2all\n", "'backmap' must be one of"),
        ("name,source,topology,trajectory,backmap_properties\na,IDRome,t.pdb,t.dcd,all\n", "give 'backmap' too"),
        ("name,source,topology,trajectory,add_hydrogens\na,PED,t.pdb,t.dcd,maybe\n",
         "'add_hydrogens' must be yes or no"),
        ("name,source,topology,trajectory,hydrogen_ph\na,PED,t.pdb,t.dcd,6\n", "apply when hydrogens are added"),
        ("name,source,topology,trajectory,add_hydrogens,hydrogen_ph\na,PED,t.pdb,t.dcd,yes,15\n", r"\[0, 14\]"),
        ("name,source,topology,trajectory,add_hydrogens,hydrogen_forcefield\na,PED,t.pdb,t.dcd,yes,charmm\n",
         "'hydrogen_forcefield' must be one of"),
        ("name,source,structure,add_hydrogens\na,proteinflow_pdb,x.pdb,yes\n", "add_hydrogens apply to MD inputs"),
        ("name,source,topology,trajectory,stride\na,ATLAS,t.pdb,t.dcd,two\n", "'stride' must be an integer"),
        ("name,source,structure\nx/y,proteinflow_pdb,x.pdb\n", "not usable"),
        ("name,source,structure,stride\na,proteinflow_pdb,x.pdb,2\n", "apply to MD"),
    ],
)
def test_errors_name_file_row_and_problem(tmp_path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError, match=message) as info:
        read_manifest(path)
    assert str(path) in str(info.value)


def test_shards_partition_names_stably() -> None:
    names = [f"protein_{k}" for k in range(200)]
    shards = [shard_of(n, 4) for n in names]
    assert set(shards) == {0, 1, 2, 3} and min(shards.count(s) for s in range(4)) > 30
    assert [shard_of(n, 4) for n in reversed(names)] == list(reversed(shards))
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "a/b", "1", "-1/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
