"""The networks an evaluation reads: its own, and the others its map kinds name.

A map kind may name another network (``MapSpec(net="mobilenet_v2")``, e.g. MobileNetV2's
activations beside SqueezeNet's maps). That network is loaded once per process from the
installed weights, its maps live in the same cache folder under *its* network key, and a fitted
box model records the SHA-256 of every network it reads, so that it refuses other weights.
"""
from sensloc import weights as weight_files
from sensloc.evaluation.map_cache import MapCache, network_key


#: Other networks loaded in this process, {weight path: network}: read once per process.
_other_nets = {}


def other_network(name):
    """The installed network ``name`` (an architecture, e.g. ``"mobilenet_v2"``), loaded once
    per process; a one-line ValueError if it is not installed."""
    try:
        path = weight_files.resolve(name)
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"a map kind reads network {name!r}, which is not installed "
                         f"(sensloc weights convert FILE, or sensloc weights fetch {name})") from error
    key = str(path)
    if key not in _other_nets:
        _other_nets[key] = weight_files.load(path, architecture=name)
    return _other_nets[key]


def _other_names(net, specs):
    """The architectures, other than ``net``'s, that the map kinds ``specs`` name (sorted)."""
    return sorted({s.net for s in specs if s.net is not None and s.net != net.name})


def network_cache(cache_root, net, specs=()):
    """The :class:`MapCache` of ``net`` that also holds the maps of the other networks named
    by ``specs`` (each loaded by :func:`other_network`, keyed by its weights and preprocessing)."""
    others = {}
    for name in _other_names(net, specs):
        other = other_network(name)
        others[name] = (network_key(other), other.class_offset)
    return MapCache(cache_root, network_key(net), net.class_offset, others, net.name)


def network_identities(net, specs=()):
    """``{architecture: weights SHA-256}`` of ``net`` and of every other network ``specs`` name:
    what a fitted protocol that reads them records (None where a network has no source)."""
    found = {net.name: (net.source or {}).get("sha256")}
    for name in _other_names(net, specs):
        found[name] = (other_network(name).source or {}).get("sha256")
    return found
