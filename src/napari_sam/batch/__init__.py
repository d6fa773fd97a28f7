"""The work of ``napari-sam embed|segment|auto|train`` as plain functions, and the dask
executor that spreads it over a cluster."""
