"""action: human action recognition from video with GRU models on the shared engine (see issue: action)."""

from medact_bundles import check_shared_is_ours

check_shared_is_ours(__file__)  # one clear line, not "Cannot locate 'shared.TrainingOptions'" deep in a bundle run
