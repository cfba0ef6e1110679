"""Evaluating box protocols on photos with ground-truth boxes: the map cache, the runner (with
its worker processes or a Dask cluster), box-model files and plots."""
