"""What people read: the HTML kit, overlays, the run reports of segmentation and classification, the model card."""
