"""The project's measurements and cross-checks, run from the repository root as ``python -m benchmarks.<name>``.

Measurements time the package through its own bench API (``rtdetr_deploy.bench``: warm-up, synchronised timing,
percentiles, the machine's description and the load other processes put on it) and write ``benchmarks/results``;
cross-checks hold the package against something independent of it (transformers' port of the official model,
pycocotools). Nothing here imports from ``tests/``; what builds shipped assets lives in ``tools/``.
"""
