"""The attribution methods by the names the command line and :class:`~sensloc.saliency.maps.MapSpec` use."""
from sensloc.saliency.averaged import integrated_gradients, smoothgrad
from sensloc.saliency.methods import (deconvnet, deeplift, gradient, gradient_x_input,
                                      guided_backprop, neuron_selection)
from sensloc.saliency.occlusion import occlusion

#: The methods that can start from a forward pass run already (their ``trace=`` argument).
SHARES_FORWARD = frozenset({"gradient", "gradient_x_input", "guided", "deconvnet", "deeplift",
                            "neuron_selection", "grad_cam", "activations",
                            "class_contributions"})

#: Methods returning (N, C, H, W) attributions, by the names the command line uses.
METHODS = {
    "gradient": gradient,
    "gradient_x_input": gradient_x_input,
    "guided": guided_backprop,
    "deconvnet": deconvnet,
    "deeplift": deeplift,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "neuron_selection": neuron_selection,
    "occlusion": occlusion,
}

