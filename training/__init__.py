"""Training the packaged ``vgg_small`` on generated scenes (:mod:`sensloc.training.vgg_small`)."""
