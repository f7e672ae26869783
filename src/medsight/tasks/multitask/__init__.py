"""Joint multi-task learning: one shared U-Net encoder for segmentation, classification and lesion-centre heat maps.

``data`` reads datasets with a mask and a class per case (partial labels allowed); ``plan`` extends the segmentation
plan; ``losses`` weights the task losses (fixed or learned uncertainty); ``sampler`` and ``trainer`` bind it to the
shared training loop; ``pipeline`` runs plan -> train -> calibrate -> validate; ``predict`` writes masks and
``predictions.csv``; ``report`` adds Grad-CAM beside the predicted masks. See ``docs/multitask.md``.
"""
