"""Datasets: datalists, the one rule of which cases train and which validate (and folds), integrity checks, caching,
and the generators of the demo and tutorial data (synthetic abdomen CT, two-channel brain MR, MNI152 hemispheres)."""
