"""Explanations: Grad-CAM and occlusion heat maps for classifiers, label saliency for segmentation networks, and
PNG renderings (2D overlay, 3D slice montage)."""

from medsight.explain.gradcam import grad_cam, segmentation_saliency
from medsight.explain.occlusion import occlusion
from medsight.explain.render import montage_3d, overlay_heatmap

__all__ = ["grad_cam", "montage_3d", "occlusion", "overlay_heatmap", "segmentation_saliency"]
