"""Fits on a Dask cluster: the general engine's row blocks as actors on the workers, and the cluster itself."""
