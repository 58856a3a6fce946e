"""Input readers: everything that turns a user's files into coordinates and a protein description.

* :mod:`.spec` — an input as named (``file.h5#320/0``): the one selector parser and per-input record;
* :mod:`.topology` — topologies of every format (MDTraj, GROMACS TPR via MDAnalysis, mdCATH) and insertion codes;
* :mod:`.trajectories` — trajectory frames in chunks (:mod:`.mdcath` files, :mod:`.ensembles` of models);
* :mod:`.protein` — the protein atoms and residues of a topology;
* :mod:`.periodic` — making molecules whole across periodic boundaries;
* :mod:`.coarse_grained` — one-bead-per-residue (Cα) traces and Martini backbone beads;
* :mod:`.backmapping` and :mod:`.hydrogens` — rebuilding atoms a trace or an ensemble lacks;
* :mod:`.structures` — the Cα atoms of a structure file (normal-mode input).

The MD frames that :func:`~seqdance.features.extract_md` measures are assembled from these by
:func:`seqdance.features.md.frames.open_frames`.
"""
