"""Localization: from heat maps to boxes, and how well the boxes fit.

Bottom to top (each module imports only those above it in this list):
:mod:`~sensloc.localize.boxes` (the box convention, IoU, union boxes, boxes from a heat map),
:mod:`~sensloc.localize.metrics` (hits, CorLoc and its interval), :mod:`~sensloc.localize.folds`
(the fold assignment of every cross-validation), :mod:`~sensloc.localize.baselines`,
:mod:`~sensloc.localize.regression` (closed-form ridge least squares), the box protocols
(:mod:`~sensloc.localize.protocols`, one module per family) and the presets that name and tune
them (:mod:`~sensloc.localize.presets`).
"""
