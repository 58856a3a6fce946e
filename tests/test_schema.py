import pytest

from seqdance import schema


def test_channel_layout_matches_design():
    assert len(schema.PROPERTIES) == 23
    assert schema.N_RESIDUE_CHANNELS == 50
    assert schema.N_PAIR_CHANNELS == 13
    # residue channels tile 0..49 and pair channels 0..12 without gaps or overlaps
    for level, total in (("residue", 50), ("pair", 13)):
        covered = sorted(c for p in schema.PROPERTIES if p.level == level for c in range(p.start, p.start + p.width))
        assert covered == list(range(total))
    p = schema.PROPERTY_BY_NAME
    assert p["ss"].channels == slice(3, 11) and p["ss"].labels[-1] == "coil"
    assert p["psi"].channels == slice(35, 47)
    assert p["nma_res3"].channels == slice(49, 50)
    assert p["corr"].channels == slice(9, 10) and p["corr"].activation == "signed_sigmoid"
    assert p["nma_pair1"].store_channels == slice(0, 1)
    assert p["nma_res2"].store_channels == slice(1, 2)
    assert p["psi"].store_channels == slice(35, 47)
    assert [q.name for q in schema.PAIR_PROPERTIES[:9]] == list(schema.INTERACTION_NAMES)
    assert all(p[n].transform == "cube_root" for n in schema.INTERACTION_NAMES)
    assert p["rmsf_nor"].transform == "max_normalise"


def test_store_widths_and_groups():
    assert schema.stored_width("residue", "md") == 47
    assert schema.stored_width("residue", "nma") == 3
    assert schema.stored_width("pair", "md") == 10
    assert schema.stored_width("pair", "nma") == 3
    assert schema.kind_of_stored_width("pair", 3) == "nma"
    with pytest.raises(ValueError, match="channels"):
        schema.kind_of_stored_width("residue", 12)
    assert schema.source_group("mdCATH") == "md"
    assert schema.source_group("idrome") == "idr"
    assert schema.source_group("proteinflow_sabdab") == "nma"
    assert schema.source_group("md:my_sims") == "md"
    with pytest.raises(ValueError, match="unknown data source"):
        schema.source_group("my_sims")
    assert len(schema.group_properties("nma")) == 6
    assert len(schema.group_properties("md")) == 17


def test_get_properties_orders_and_validates():
    assert [p.name for p in schema.get_properties(["psi", "sasa_mean"])] == ["sasa_mean", "psi"]
    with pytest.raises(ValueError, match="unknown property"):
        schema.get_properties(["rmsf"])
