"""Saliency: backward rules, attribution methods built on them, and post-processing of maps."""
from sensloc.saliency import postprocess
from sensloc.saliency.averaged import integrated_gradients, integration_points, smoothgrad
from sensloc.saliency.methods import (backpropagate, class_contributions, deconvnet, deeplift,
                                      grad_cam, gradient, gradient_x_input, guided_backprop,
                                      make_reference, neuron_selection, score_signal,
                                      sensitivity_map, targets_for)
from sensloc.saliency.occlusion import occlusion, patch_cover, patch_starts
from sensloc.saliency.registry import METHODS
from sensloc.saliency.rules import RULES, Deconvnet, Gradient, Guided, Rescale, Rule

__all__ = ["METHODS", "RULES", "Deconvnet", "Gradient", "Guided", "Rescale", "Rule",
           "backpropagate", "class_contributions", "deconvnet", "deeplift", "grad_cam",
           "gradient", "gradient_x_input", "guided_backprop", "integrated_gradients",
           "integration_points", "make_reference", "neuron_selection", "occlusion", "patch_cover",
           "patch_starts", "postprocess", "score_signal", "sensitivity_map", "smoothgrad",
           "targets_for"]
