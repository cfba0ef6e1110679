"""Fitted box models on disk: small HDF5 files that carry everything needed to apply them.

Layout (format version 1)

=========================  ==================================================================
attribute ``format``       ``"sensloc-boxes"``
``format_version``         ``1``
``protocol``               protocol kind (:data:`sensloc.localize.presets.KINDS`)
``architecture``           the network's architecture, e.g. ``"squeezenet1_0"``
``network_key``            :func:`sensloc.evaluation.map_cache.network_key`: weights SHA-256 + preprocessing
``weights_sha256``         SHA-256 of the network's source weight file
``methods``                JSON list of the map kinds the protocol reads
``training_fingerprint``   SHA-256 over the training images' ids, classes and boxes
``n_train``                number of training images
``created_by``             free text
preprocessing attributes   as in the weight files (:meth:`images.Preprocessing.to_attrs`)
dataset ``params``         JSON of the fitted protocol (thresholds, regression weights, ...)
=========================  ==================================================================

A model refuses to be applied to another network or to maps of another method
(:meth:`BoxModel.check`).
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sensloc._files import atomic_write

from sensloc.saliency.maps import MapSpec
from sensloc.evaluation.map_cache import network_key
from sensloc.evaluation.networks import network_identities
from sensloc.localize.presets import protocol_from_params

FORMAT, FORMAT_VERSION = "sensloc-boxes", 1


def training_fingerprint(records):
    """SHA-256 over (image id, class, boxes) of the training images, in a canonical order."""
    digest = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.image_id):
        digest.update(f"{r.image_id}|{r.class_index}|{np.round(r.boxes, 2).tolist()}\n".encode())
    return digest.hexdigest()


@dataclass
class BoxModel:
    """A fitted protocol and the facts it was fitted under."""
    protocol: object
    meta: dict

    def check(self, net, method=None):
        """Refuse another network (weights or preprocessing) or a method the model does not use."""
        if network_key(net) != self.meta["network_key"]:
            raise ValueError(
                f"this box model was fitted for {self.meta['architecture']} with weights "
                f"{self.meta['weights_sha256'][:12]}..., not for {net.name} with weights "
                f"{net.source['sha256'][:12]}...; fit one for this network with sensloc fit-boxes")
        self.protocol.use_networks(network_identities(net, self.protocol.map_specs))
        methods = [s.method for s in self.protocol.map_specs]
        if method is not None and method not in methods:
            raise ValueError(f"this box model reads {methods} maps, not {method!r}")
        return self


def save_box_model(path, protocol, net, records, created_by="sensloc fit-boxes"):
    """Write a fitted protocol atomically. Returns the path."""
    path = Path(path)
    with atomic_write(path) as temporary:
        with h5py.File(temporary, "w") as f:
            f.attrs.update({
                "format": FORMAT, "format_version": FORMAT_VERSION, "protocol": protocol.kind,
                "architecture": net.name, "network_key": network_key(net),
                "weights_sha256": net.source["sha256"],
                "methods": json.dumps([s.to_json() for s in protocol.map_specs]),
                "training_fingerprint": training_fingerprint(records), "n_train": len(records),
                "created_by": created_by})
            f.attrs.update(net.preprocessing.to_attrs())
            f.create_dataset("params", data=json.dumps(protocol.params()))
    return path


def load_box_model(path):
    """Read a box model; errors name the file."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            params = f["params"][()] if "params" in f else None
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 box model ({error})") from error
    if meta.get("format") != FORMAT or params is None:
        raise ValueError(f"{path}: not a sensloc box model (format {meta.get('format')!r})")
    if int(meta["format_version"]) > FORMAT_VERSION:
        raise ValueError(f"{path}: box model format {meta['format_version']} is newer than "
                         f"this sensloc reads ({FORMAT_VERSION})")
    params = json.loads(params.decode() if isinstance(params, bytes) else params)
    protocol = protocol_from_params(meta["protocol"], params)
    meta["map_specs"] = [MapSpec.from_json(s) for s in json.loads(meta["methods"])]
    return BoxModel(protocol, meta)
