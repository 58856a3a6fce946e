"""Ways to look at predictions: figures of one prediction (:mod:`seqdance.display.plots`) and a per-residue
property written onto a structure for molecular viewers (:mod:`seqdance.display.structure_map`)."""
