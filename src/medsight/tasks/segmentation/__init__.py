"""tasks/segmentation"""
