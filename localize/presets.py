"""The presets: named box protocols with the constants tuned for them."""

#: Fixed thresholds for `sensloc localize --preset` without a fitted box model: tuned on the
#: 692 development photos with SqueezeNet (README, "Measured").
PRESET_FRACTIONS = {"gradient": 0.18, "grad_cam": 0.10, "khan": 0.12, "dwaraknath": 0.04}
