"""dlr-bench: throughput comparisons of dlr-engine's kernels against plain-torch and library
baselines (installed as ``dlr_engine.bench``)."""
