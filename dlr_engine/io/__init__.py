"""Readers of model files from other frameworks (TensorFlow tensor bundles)."""
from .tf_bundle import BundleError, ChecksumError, TFBundle, is_optimizer_slot

__all__ = ["BundleError", "ChecksumError", "TFBundle", "is_optimizer_slot"]
