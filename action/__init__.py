"""action: human action recognition from video with GRU models on the shared engine (see issue: action)."""
