"""Independent PyTorch definitions of the architectures, for reference checks only.

Written from the papers and the Caffe prototxt, not translated from ``nets``: a structural
mistake in ``nets`` (a missing ceil mode, a wrong padding) would make them disagree. Every ReLU
is its own module, used once, so that Captum's hooks see each nonlinearity.
"""
import numpy as np

torch = __import__("pytest").importorskip("torch", reason="PyTorch is the reference here")
nn = torch.nn

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class TorchVGG(nn.Module):
    """VGG as in Simonyan & Zisserman: 3x3 convs (pad 1), 2x2 max pools, fc6-fc8."""

    def __init__(self, cfg=VGG16, num_classes=1000, side=224):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                side //= 2
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, 4096), nn.ReLU(),
                                        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))

    def load_from(self, net, copy=True):
        """Copy parameters from a ``nets`` VGG (names conv{b}_{i}, fc6..fc8).

        ``copy=False`` shares the arrays' memory instead (read-only use, saves VGG16's 0.5 GB).
        """
        params = net.parameters()
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        conv_names = [n for n in params if n.startswith("conv")]
        fcs = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for module, name in list(zip(convs, conv_names)) + list(zip(fcs, ["fc6", "fc7", "fc8"])):
            module.weight.data = _tensor(params[name]["weight"], copy)
            module.bias.data = _tensor(params[name]["bias"], copy)
        return self


class TorchFire(nn.Module):
    def __init__(self, c_in, squeeze, e1, e3):
        super().__init__()
        self.squeeze, self.squeeze_relu = nn.Conv2d(c_in, squeeze, 1), nn.ReLU()
        self.expand1x1, self.expand1x1_relu = nn.Conv2d(squeeze, e1, 1), nn.ReLU()
        self.expand3x3, self.expand3x3_relu = nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU()

    def forward(self, x):
        s = self.squeeze_relu(self.squeeze(x))
        return torch.cat([self.expand1x1_relu(self.expand1x1(s)),
                          self.expand3x3_relu(self.expand3x3(s))], 1)


class TorchSqueezeNet(nn.Module):
    """SqueezeNet 1.0 as in the Caffe prototxt (ceil-mode pools, conv_final 1x1 with pad 1)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, stride=2), nn.ReLU(), pool(),
            TorchFire(96, 16, 64, 64), TorchFire(128, 16, 64, 64), TorchFire(128, 32, 128, 128),
            pool(),
            TorchFire(256, 32, 128, 128), TorchFire(256, 48, 192, 192),
            TorchFire(384, 48, 192, 192), TorchFire(384, 64, 256, 256),
            pool(),
            TorchFire(512, 64, 256, 256))
        self.conv_final, self.relu_final = nn.Conv2d(512, num_classes, 1, padding=1), nn.ReLU()
        self.pool_final = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool_final(self.relu_final(self.conv_final(self.features(x)))).flatten(1)

    def load_from(self, net, copy=True):
        params = net.parameters()

        def put(module, name):
            module.weight.data = _tensor(params[name]["weight"], copy)
            module.bias.data = _tensor(params[name]["bias"], copy)

        put(self.features[0], "conv1")
        fires = [m for m in self.features if isinstance(m, TorchFire)]
        for i, fire in enumerate(fires, start=2):
            put(fire.squeeze, f"fire{i}/squeeze1x1")
            put(fire.expand1x1, f"fire{i}/expand1x1")
            put(fire.expand3x3, f"fire{i}/expand3x3")
        put(self.conv_final, "conv_final")
        return self


class TorchInvertedResidual(nn.Module):
    """MobileNetV2's block (Sandler et al., Fig. 4d): 1x1 expansion + ReLU6 (absent when the
    expansion factor is 1), 3x3 depthwise + ReLU6, 1x1 linear projection, and the input added
    back where the stride is 1 and the channels do not change. Stride-2 depthwise convolutions
    pad as TensorFlow's SAME does on even sizes: nothing before, one pixel after."""

    def __init__(self, c_in, expansion, c_out, stride):
        super().__init__()
        hidden = c_in * expansion
        self.expand = nn.Conv2d(c_in, hidden, 1) if expansion != 1 else None
        self.expand_relu = nn.ReLU6() if expansion != 1 else None
        self.pad = nn.ZeroPad2d((0, 1, 0, 1) if stride == 2 else (1, 1, 1, 1))
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride=stride, groups=hidden)
        self.depthwise_relu = nn.ReLU6()
        self.project = nn.Conv2d(hidden, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        h = self.expand_relu(self.expand(x)) if self.expand is not None else x
        h = self.project(self.depthwise_relu(self.depthwise(self.pad(h))))
        return x + h if self.residual else h


class TorchMobileNetV2(nn.Module):
    """MobileNetV2 1.0 (Table 2 of Sandler et al.) as TensorFlow Lite runs it: stem 3x3/2 -> 32,
    17 inverted residual blocks, 1x1 -> 1280, average pool, 1x1 -> 1001 classes (background
    first). ``params`` maps the layer names of :func:`sensloc.weights.tflite.layer_names` to
    ``{"weight", "bias"}`` arrays (OIHW; the classifier's weight 2-D)."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes=1001):
        super().__init__()
        self.stem_pad, self.stem = nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 32, 3, stride=2)
        self.stem_relu = nn.ReLU6()
        blocks, c = [], 32
        for t, c_out, n, s in self.STAGES:
            for i in range(n):
                blocks.append(TorchInvertedResidual(c, t, c_out, s if i == 0 else 1))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head, self.head_relu = nn.Conv2d(320, 1280, 1), nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.stem_relu(self.stem(self.stem_pad(x)))
        x = self.head_relu(self.head(self.blocks(x)))
        return self.classifier(self.pool(x).flatten(1))

    def load_params(self, params, copy=True):
        def put(module, name):
            module.weight.data = _tensor(params[name]["weight"], copy)
            module.bias.data = _tensor(params[name]["bias"], copy)

        put(self.stem, "stem")
        for number, block in enumerate(self.blocks, start=1):
            for part in ("expand", "depthwise", "project"):
                if getattr(block, part) is not None:
                    put(getattr(block, part), f"block{number}.{part}")
        put(self.head, "head")
        put(self.classifier, "classifier")
        return self


def _tensor(array, copy):
    return torch.from_numpy(array.copy() if copy else np.ascontiguousarray(array))


def torch_model(net, copy=True):
    """The PyTorch twin of a ``nets`` network, with the same parameters, in eval mode.

    ``copy=False``: the twin's parameters share memory with the network's arrays (do not
    train or modify either while both are in use).
    """
    if net.name == "vgg16":
        model = TorchVGG().load_from(net, copy)
    elif net.name == "squeezenet1_0":
        model = TorchSqueezeNet(net.num_classes).load_from(net, copy)
    elif net.name == "mobilenet_v2":
        model = TorchMobileNetV2(net.num_classes).load_params(net.parameters(), copy)
    else:
        raise ValueError(f"no PyTorch reference for {net.name}")
    return model.eval()


def relative_error(a, b):
    """``max |a - b| / max |b|``: the error measure used throughout the reference tests."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()
