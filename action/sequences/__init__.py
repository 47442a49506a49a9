"""Sensor recordings and other sequences of any length: file formats (:mod:`.formats`, :mod:`.readers`) and the normalised dataset (:mod:`.dataset`)."""
