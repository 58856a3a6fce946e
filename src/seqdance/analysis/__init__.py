"""What a model learned: attention analysis and embedding probes (DESIGN §10).

:mod:`seqdance.analysis.attention` compares each attention head with the stored pair properties;
:mod:`seqdance.analysis.probe` regresses global conformational properties on pooled embeddings.
"""
