"""Volumes in and masks out with their exact geometry: readers (:mod:`.volumes`, and :mod:`.reader` for MONAI) and the 3D Slicer exports (:mod:`.export`)."""
