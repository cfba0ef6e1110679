"""Data: photos and their preprocessing (:mod:`~sensloc.data.images`), dataset readers
(:mod:`~sensloc.data.datasets`) and generated scenes (:mod:`~sensloc.data.scenes`).

>>> from sensloc.data import images
>>> x = images.load_batch(["cat.jpg"], net.preprocessing)   # (1, 3, 227, 227) float32
"""
