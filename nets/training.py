"""Training: a loss, its gradient at the logits, and two optimizers that update parameters in place.

Training needs nothing beyond the backward passes the attribution methods already use: the
signal ``dL/d logits`` goes back through the network (:meth:`nets.Network.backward_parameters`)
and each layer with parameters turns the signal at its output into ``dL/dw`` and ``dL/db``.

>>> loss, signal = softmax_cross_entropy(net.forward(x).output, labels)
>>> optimizer.step(net.backward_parameters(trace, signal))

Optimizers hold references to the network's arrays (``net.parameters()``) and change them in
place; create them after any :meth:`nets.Network.astype`, which replaces the arrays.
"""
import numpy as np

from sensloc.nets.network import softmax


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax probabilities, and its gradient at the logits.

    ``L = -(1/N) sum_n log p[n, y_n]`` with ``p = softmax(z)``, and
    ``dL/dz[n, k] = (p[n, k] - 1[k == y_n]) / N``.

    Parameters
    ----------
    logits : (N, K) float array
    labels : (N,) int array
        Class indices in ``0 .. K-1``.

    Returns
    -------
    loss : float
    signal : (N, K) array of ``logits``' dtype
        ``dL/d logits``, the signal to send back.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, K) and labels (N,), got {logits.shape} and "
                         f"{labels.shape}")
    if labels.dtype.kind not in "iu" or labels.min(initial=0) < 0 \
            or labels.max(initial=0) >= logits.shape[1]:
        raise ValueError(f"labels must be integers in [0, {logits.shape[1]}), got {labels}")
    rows = np.arange(len(labels))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_p[rows, labels].mean())
    signal = softmax(logits)
    signal[rows, labels] -= 1
    return loss, (signal / len(labels)).astype(logits.dtype)


class Optimizer:
    """Shared bookkeeping: the parameters, the learning rate, L2 weight decay.

    Weight decay adds ``weight_decay * w`` to every weight's gradient (not to biases): the
    gradient of ``(weight_decay / 2) * ||w||^2``, as ``torch.optim`` does it.
    """

    def __init__(self, parameters, lr, weight_decay=0.0):
        if not lr > 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {lr} and {weight_decay}")
        self.parameters = parameters
        self.lr = lr
        self.weight_decay = weight_decay
        self.steps = 0

    def _gradients(self, grads):
        if grads.keys() != self.parameters.keys():
            raise ValueError("the gradients do not cover the optimizer's parameters: "
                             f"missing {sorted(self.parameters.keys() - grads.keys())[:3]}")
        # Check everything before changing anything: a refused step leaves the network as it was.
        for name, arrays in self.parameters.items():
            for key in arrays:
                if not np.isfinite(grads[name][key]).all():
                    raise FloatingPointError(f"the gradient of {name}/{key} is not finite; "
                                             "lower the learning rate")
        for name, arrays in self.parameters.items():
            for key, value in arrays.items():
                g = grads[name][key]
                if key == "weight" and self.weight_decay:
                    g = g + self.weight_decay * value
                yield name, key, value, g

    def step(self, grads):
        """Update every parameter in place from ``grads`` (the layout of ``parameters``)."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum.

    ``v <- momentum * v + g``, ``w <- w - lr * v`` (``torch.optim.SGD``'s form).
    """

    def __init__(self, parameters, lr, momentum=0.9, weight_decay=0.0):
        super().__init__(parameters, lr, weight_decay)
        self.momentum = momentum
        self.velocity = {name: {k: np.zeros_like(v) for k, v in arrays.items()}
                         for name, arrays in parameters.items()}

    def step(self, grads):
        self.steps += 1
        for name, key, value, g in self._gradients(grads):
            v = self.velocity[name][key]
            v *= self.momentum
            v += g
            value -= self.lr * v


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015).

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(parameters, lr, weight_decay)
        self.betas, self.eps = betas, eps
        self.moments = {name: {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in arrays.items()}
                        for name, arrays in parameters.items()}

    def step(self, grads):
        self.steps += 1
        b1, b2 = self.betas
        for name, key, value, g in self._gradients(grads):
            m, v = self.moments[name][key]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat = m / (1 - b1 ** self.steps)
            v_hat = v / (1 - b2 ** self.steps)
            value -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(value.dtype)


def train_step(net, x, labels, optimizer):
    """One minibatch: forward, cross-entropy, backward to the parameters, update.

    Parameters
    ----------
    net : nets.Network
    x : (N, C, H, W) float array
        A preprocessed batch.
    labels : (N,) int array
    optimizer : Optimizer
        Built on ``net.parameters()``.

    Returns
    -------
    loss : float
        Before the update.
    correct : int
        How many of the batch the network classified right, before the update.
    """
    trace = net.forward(x)
    loss, signal = softmax_cross_entropy(trace.output, labels)
    optimizer.step(net.backward_parameters(trace, signal))
    return loss, int((trace.output.argmax(axis=1) == labels).sum())
