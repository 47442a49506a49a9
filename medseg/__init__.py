"""medseg: 3D medical image segmentation with V-Net on the shared engine (see issue: medseg bundles)."""
