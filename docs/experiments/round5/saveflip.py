"""best_two_nets' cell features of the mirrored 692 photos -> /work/ms-runs/X-flip.npy"""
import os, sys
sys.path.insert(0, "/work/main/docs/experiments/tiny")
os.environ.setdefault("FLIP_OUT", "/work/tiny-runs/flip")
import numpy as np
import flip_tta as ft
ps = ft.protocols()
XF = ft.features(ft.mirrored(), {"t": ps["best_two_nets"]})["t"]
np.save("/work/ms-runs/X-flip.npy", XF); print(XF.shape)
