"""Models of the literature around DLR."""
