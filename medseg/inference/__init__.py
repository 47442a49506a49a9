"""Inference: the whole-volume inferer (also training's validation), the segmenter that turns files into masks on
their own grid, resampling, post-processing, and trained models rebuilt from their record."""
