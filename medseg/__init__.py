"""medseg: 3D medical image segmentation with V-Net on the shared engine (see issue: medseg bundles)."""

from medact_bundles import check_shared_is_ours

check_shared_is_ours(__file__)  # one clear line, not "Cannot locate 'shared.TrainingOptions'" deep in a bundle run
