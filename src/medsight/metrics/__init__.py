"""Metrics without plotting: segmentation (:mod:`~medsight.metrics.segmentation`), classification
(:mod:`~medsight.metrics.classification`) and lesion detection (:mod:`~medsight.metrics.lesions`)."""
