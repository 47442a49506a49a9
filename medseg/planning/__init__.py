"""Planning (nnU-Net's experiment planning on medact's terms): a dataset's fingerprint, the machine budget, the plan,
and the plan written as a ready bundle."""
