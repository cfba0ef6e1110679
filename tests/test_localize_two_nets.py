"""Map kinds of a second network (``MapSpec.net``) and the ``best_two_nets`` preset.

Resampling another grid's activations onto the cell grid is checked against PyTorch's
bilinear ``interpolate`` (an independent implementation, ``align_corners=False``); the cache
keys, the networks a fitted objectness model records and refuses, and the preset's registration
on synthetic inputs; the evaluation's maps of a second network on two real photos, when the
shared weights and photos are present (skipped otherwise).
"""
import numpy as np
import pytest

from conftest import shared_path

from sensloc.evaluation.map_cache import MapCache
from sensloc.localize import presets
from sensloc.localize.protocols.objectness import (LAMBDAS_WIDE, ObjectnessBoxes, cell_features,
                                                   resample_cells)
from sensloc.saliency.maps import MapSpec

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def test_resample_cells_matches_torch_bilinear(rng):
    """7 x 7 -> 13 x 13 (and a non-square grid) equals ``torch.nn.functional.interpolate``
    (bilinear, ``align_corners=False``) to float32 rounding; the own grid is left as it is."""
    torch = pytest.importorskip("torch")
    for source, target in (((7, 7), (13, 13)), ((5, 9), (12, 4))):
        a = rng.random((2, 3) + source).astype(np.float32)
        expected = torch.nn.functional.interpolate(torch.from_numpy(a.astype(np.float64)),
                                                   size=target, mode="bilinear",
                                                   align_corners=False).numpy()
        got = resample_cells(a, target)
        assert got.shape == (2, 3) + target and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    a = rng.random((1, 2, 13, 13)).astype(np.float32)
    assert resample_cells(a, (13, 13)) is a


def test_cell_features_put_a_coarser_layer_on_the_first_layers_grid(rng):
    """phi = [sqrt(A^1), sqrt(resample(A^2)), s]: the second layer's block is the square root
    of its bilinear resampling, computed here by two explicit interpolation matrices."""
    first = rng.random((2, 4, 6, 6)).astype(np.float32)
    second = rng.random((2, 3, 3, 3)).astype(np.float32)
    heat = rng.random((2, 24, 24)).astype(np.float32)
    features = cell_features([first, second], [heat], sigma=2.0)
    assert features.shape == (2, 36, 4 + 3 + 1)

    def matrix(out, inp):  # half-pixel centres, clamped, linear between the two nearest
        m = np.zeros((out, inp))
        for i in range(out):
            src = min(max((i + 0.5) * inp / out - 0.5, 0), inp - 1)
            low = int(np.floor(src))
            high = min(low + 1, inp - 1)
            m[i, low] += 1 - (src - low)
            m[i, high] += src - low
        return m
    r = matrix(6, 3)
    expected = np.sqrt(np.einsum("ij,ncjk,lk->ncil", r, second.astype(np.float64), r))
    np.testing.assert_allclose(features[:, :, 4:7].transpose(0, 2, 1).reshape(2, 3, 6, 6),
                               expected, rtol=1e-5)
    np.testing.assert_allclose(features[:, :, :4].transpose(0, 2, 1).reshape(2, 4, 6, 6),
                               np.sqrt(first), rtol=1e-6)


def test_map_kinds_of_another_network_have_their_own_cache_key():
    """The name and JSON carry ``net``; the path lies under that network's key, at its own
    class number (MobileNetV2's output 0 is "background": dataset class c is output c + 1)."""
    own = MapSpec.make("activations", layer="head_relu6")
    other = MapSpec.make("activations", layer="head_relu6", net="mobilenet_v2")
    assert own != other and own.name != other.name and other.name.endswith("net=mobilenet_v2")
    assert MapSpec.from_json(other.to_json()) == other
    assert "net" not in own.to_json()  # the evaluation's own maps keep their old keys
    cache = MapCache("/cache", "k" * 16, class_offset=0,
                     others={"mobilenet_v2": ("m" * 16, 1)}, name="squeezenet1_0")
    digest = "ab" * 32
    assert cache.map_path(own, digest, 5).parts[-4] == "k" * 16
    path = cache.map_path(other, digest, 5)
    assert path.parts[-4] == "m" * 16 and path.name == f"{digest}-6.npy"
    assert cache.map_path(MapSpec.make("gradient", net="squeezenet1_0"), digest, 5) \
        .parts[-4] == "k" * 16  # naming the own network is the own network
    with pytest.raises(ValueError, match="vgg16, which this map cache was not opened with"):
        cache.map_path(MapSpec.make("gradient", net="vgg16"), digest, 5)
    with pytest.raises(ValueError, match="net must be None or an architecture name"):
        MapSpec.make("gradient", net="../x")


def synthetic(rng, n=24):
    """Maps of ``n`` images: a 4 x 4 layer, a 2 x 2 layer of another network, one 32 x 32
    heat map; each image's object a random box, where the layers and the map are high."""
    first = MapSpec.make("activations", layer="fire9")
    second = MapSpec.make("activations", layer="head_relu6", net="mobilenet_v2")
    heat = MapSpec.make("gradient")
    boxes, maps = [], {first: [], second: [], heat: []}
    for _ in range(n):
        x0, y0 = rng.integers(0, 16, 2)
        box = np.array([[x0, y0, x0 + 16, y0 + 16]], float)
        mask = np.zeros((32, 32), np.float32)
        mask[y0:y0 + 16, x0:x0 + 16] = 1
        maps[heat].append(mask + 0.1 * rng.random((32, 32), np.float32))
        cells = mask.reshape(4, 8, 4, 8).mean(axis=(1, 3))
        maps[first].append(cells[None] * rng.random((3, 1, 1), np.float32))
        maps[second].append(mask.reshape(2, 16, 2, 16).mean(axis=(1, 3))[None]
                            * rng.random((2, 1, 1), np.float32))
        boxes.append(box)
    return {k: np.stack(v) for k, v in maps.items()}, boxes, (first, second), (heat,)


def test_objectness_params_record_the_networks_and_refuse_others(rng):
    maps, boxes, layers, evidence = synthetic(rng)
    fresh = ObjectnessBoxes(layers, evidence, fractions=(0.3, 0.5), scales=(1.0,),
                            sigmas=(2.0,), border_widths=(0.0,), lambdas=(1.0, 100.0),
                            inner_folds=3)
    with pytest.raises(ValueError, match="reads maps of \\['mobilenet_v2'\\]"):
        fresh.use_networks({"squeezenet1_0": SHA_A})
    networks = {"squeezenet1_0": SHA_A, "mobilenet_v2": SHA_B}
    fitted = fresh.use_networks(networks).fit(maps, boxes)
    params = fitted.params()
    assert params["networks"] == networks
    again = presets.protocol_from_params("objectness", params)
    assert again.networks == networks and again.fitted
    np.testing.assert_array_equal(again.use_networks(networks).predict(maps), fitted.predict(maps))
    with pytest.raises(ValueError, match=r"^this objectness model was fitted on mobilenet_v2 "
                                         r"weights bbbbbbbbbbbb\.\.\., not cccccccccccc\.\.\.: refit it$"):
        again.use_networks({"squeezenet1_0": SHA_A, "mobilenet_v2": SHA_C})
    with pytest.raises(ValueError, match="fitted on the networks"):
        again.use_networks({"vgg16": SHA_A, "mobilenet_v2": SHA_B})


def test_best_two_nets_is_a_registered_preset():
    assert "best_two_nets" in presets.PRESETS
    protocol = presets.preset("best_two_nets", "squeezenet1_0")
    layers = [(s.options, s.net) for s in protocol.layers]
    assert layers == [((("layer", "pool8"),), None), ((("layer", "fire9"),), None),
                      ((("layer", "block14"),), "mobilenet_v2"),
                      ((("layer", "head_relu6"),), "mobilenet_v2")]
    assert protocol.evidence == presets.mix_specs("squeezenet1_0")
    assert protocol.lambdas == LAMBDAS_WIDE and max(LAMBDAS_WIDE) == 1e7
    assert {s.net for s in presets.preset("best_two_nets", "mobilenet_v2").layers} \
        == {None, "squeezenet1_0"}
    # Both networks' class contributions, and every map kind in both views; a network with a
    # fully connected head (VGG16) has none, its second network still does.
    assert [s.net for s in protocol.contributions] == [None, "mobilenet_v2"] and protocol.mirror
    assert {s.mirror for s in protocol.map_specs} == {False, True}
    assert len(protocol.map_specs) == 2 * (4 + 2 + 4)
    vgg = presets.preset("best_two_nets", "vgg16")
    assert [(s.method, s.net) for s in vgg.contributions] == [("class_contributions",
                                                               "mobilenet_v2")]
    # ``best`` is unchanged: one network, lambdas 10^0..10^6.
    best = presets.preset("best", "squeezenet1_0")
    assert {s.net for s in best.map_specs} == {None} and max(best.lambdas) == 1e6


def test_the_evaluation_computes_a_second_networks_maps_with_it(tmp_path, monkeypatch):
    """On two real photos: MobileNetV2's activations, cached beside SqueezeNet's maps, equal
    MobileNetV2's own forward pass of the photo preprocessed its way (224 x 224 RGB); a
    network that is not installed is refused in one line."""
    from sensloc import weights
    from sensloc.data import images
    from sensloc.data.datasets import read_manifest
    from sensloc.evaluation import maps as evaluation_maps, networks
    data = shared_path("data", "imagenet-val-227")
    tflite = shared_path("weights", "mobilenet-tflite", "mobilenet_v2_1.0_224_quant.tflite")
    squeezenet = shared_path("weights", "squeezenet-1.0-dc", "compressed_SqueezeNet.net")
    monkeypatch.setenv("SENSLOC_CACHE_DIR", str(tmp_path / "user-cache"))
    monkeypatch.setattr(networks, "_other_nets", {})
    specs = (MapSpec.make("activations", layer="fire9"),
             MapSpec.make("activations", layer="head_relu6", net="mobilenet_v2"))
    net = weights.load(weights.convert(squeezenet, out=tmp_path / "squeezenet1_0.h5"))
    records = read_manifest(data)[:2]
    dataset = evaluation_maps.Dataset(records)
    with pytest.raises(ValueError, match=r"^a map kind reads network 'mobilenet_v2', which is "
                                         r"not installed \(sensloc weights convert FILE"):
        evaluation_maps.ensure_maps(tmp_path / "squeezenet1_0.h5", net, dataset, specs,
                                    tmp_path / "maps", progress=False)
    weights.convert(tflite)  # installed in the user cache, where the evaluation finds it
    evaluation_maps.ensure_maps(tmp_path / "squeezenet1_0.h5", net, dataset, specs,
                                tmp_path / "maps", progress=False)
    got, _ = evaluation_maps.load_maps(net, dataset, specs, tmp_path / "maps")
    assert got[specs[0]].shape == (2, 512, 13, 13)
    mobilenet = weights.load("mobilenet_v2")
    x = images.load_batch([r.path for r in records], mobilenet.preprocessing)
    assert x.shape == (2, 3, 224, 224)
    np.testing.assert_array_equal(got[specs[1]], mobilenet.forward(x).outputs["head_relu6"])
    cache = networks.network_cache(tmp_path / "maps", net, specs)
    stored = cache.map_path(specs[1], dataset.digests[0], records[0].class_index)
    assert stored.is_file() and stored.name.endswith(f"-{records[0].class_index + 1}.npy")
    assert networks.network_identities(net, specs)["mobilenet_v2"] \
        == mobilenet.source["sha256"]
