"""Expression data in: reading files, the vignette's simulation, preprocessing (numpy, anndata)."""
