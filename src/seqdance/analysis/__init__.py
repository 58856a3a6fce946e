"""What a model learned: attention analysis and embedding probes (docs/design.md#what-the-model-learned).

:mod:`seqdance.analysis.attention` compares each attention head with the stored pair properties;
:mod:`seqdance.analysis.probe` regresses global conformational properties on pooled embeddings.
"""
