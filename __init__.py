"""sensloc: weakly supervised object localization from saliency, in NumPy and Numba.

The subpackages follow the data, one way::

    data        images, preprocessing (both geometry directions), dataset readers, scenes
    nets        layers as forward/backward pairs, architectures (the linear half of Eq. 1)
    saliency    rules (the g' half of Eq. 1), methods built on them, post-processing
    localize    boxes, metrics, baselines, regression, box protocols and presets
    evaluation  map cache, workers, the evaluation runner, box-model files, plots
    weights     the HDF5 weight format, converters, downloads, the cache
    training    training the packaged ``vgg_small`` on generated scenes
    coursework  the graded assignments and their grader
    cli         the ``sensloc`` command

Import what you use (``from sensloc import nets, saliency``): importing ``sensloc`` loads
nothing else and changes nothing in the process.
"""
__version__ = "0.2.0"
