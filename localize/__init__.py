"""Localization: from heat maps to boxes, and how well the boxes fit.

:mod:`~sensloc.localize.boxes` (the box convention, IoU, boxes from a heat map),
:mod:`~sensloc.localize.metrics` (CorLoc and its interval), :mod:`~sensloc.localize.baselines`,
:mod:`~sensloc.localize.regression` (closed-form least squares), the box protocols
(:mod:`~sensloc.localize.protocols`) and the presets that name them
(:mod:`~sensloc.localize.presets`).
"""
