"""Prototype (issue 19), copied from the run: compute (cache) best_two_nets' maps and reductions for a seeded random subset of tiny-imagenet-val."""
import sys, time
import numpy as np
from sensloc import nets, weights
from sensloc.data.datasets import read_manifest
from sensloc.evaluation.maps import Dataset, ensure_maps
from sensloc.evaluation.networks import network_identities
from sensloc.localize.presets import preset
nets.configure_process(); nets.use_backend("numba")
recs = read_manifest("/work/shared/data/tiny-imagenet-val")
order = np.random.default_rng(0).permutation(len(recs))
start, stop, step = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
wp = weights.resolve("squeezenet1_0"); net = weights.load(wp)
p = preset("best_two_nets", "squeezenet1_0")
p.use_networks(network_identities(net, p.map_specs))
root = weights.default_cache_dir() / "maps"
for a in range(start, stop, step):
    t0 = time.time()
    ds = Dataset([recs[i] for i in order[a:a + step]])
    ensure_maps(wp, net, ds, p.map_specs, root, 1, 8, False, None, (p,))
    print(a + step, "photos done", f"{time.time() - t0:.1f}s", flush=True)
