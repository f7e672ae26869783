"""Everything between a read case and a training batch: resampling and normalisation (``spatial``, ``intensity``),
the preprocessed cache (``cache``, ``classification``), patch sampling (``sampler``), batched seeded augmentation
(``augment``, ``augment_spatial``, ``augment_intensity``) and postprocessing of label maps (``postprocess``)."""
