"""Prediction: sliding window, test-time mirroring, fold ensembles, postprocessing, native geometry."""
