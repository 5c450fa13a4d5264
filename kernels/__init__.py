"""Triton kernels of dlr-engine, installed as ``dlr_engine.kernels``; launched from ``dlr_engine.ops``."""
