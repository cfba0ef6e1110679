"""Ebrahimpour & Noelle's protocol: a closed-form ridge map from grid-averaged maps to corners.

``W = (X^T X + lambda I')^-1 X^T Y`` (:func:`sensloc.localize.regression.fit_ridge`), ``X`` the
maps averaged onto ``n x n`` grids, ``Y`` the normalized box corners; lambda is chosen by k-fold
cross-validation inside the training set (:data:`LAMBDAS`).
"""
import numpy as np

from sensloc.saliency.maps import MapSpec

from sensloc.localize.protocols.base import Protocol
from sensloc.localize.regression import BoxRegressor

#: Ridge parameters tried by the regression's inner cross-validation.
LAMBDAS = tuple(10.0 ** np.arange(-6, 3))


class RegressionBoxes(Protocol):
    """Ebrahimpour & Noelle: ridge regression from n x n grid averages of maps to box corners.

    Parameters
    ----------
    specs : sequence of MapSpec
        One or several map kinds; their features are concatenated.
    grid_sizes : int or tuple of int
    target : {"largest", "hull"}
        Which box stands for an image with several ground-truth boxes.
    k : int
        Folds of the inner cross-validation that chooses lambda.
    """

    kind = "regression"

    def __init__(self, specs, grid_sizes=(16,), target="largest", k=5, regressor=None):
        self.map_specs = tuple(specs)
        self.grid_sizes = (grid_sizes,) if np.isscalar(grid_sizes) else tuple(grid_sizes)
        self.target, self.k = target, k
        self.regressor = regressor

    def reduce(self, maps):
        """``features`` (N, D), the grid features of every map kind and grid size
        (:meth:`sensloc.localize.regression.BoxRegressor.features`), and ``size_wh`` (N, 2)."""
        kinds = [maps[s] for s in self.map_specs]
        n, h, w = kinds[0].shape
        features = BoxRegressor(self.grid_sizes, target=self.target).features(kinds)
        return {"features": features, "size_wh": np.tile(np.array([w, h], np.float64), (n, 1))}

    def fit_reduced(self, reduced, gt_boxes):
        self.regressor = BoxRegressor(self.grid_sizes, target=self.target).fit_features(
            reduced["features"], len(self.map_specs), gt_boxes, reduced["size_wh"],
            lambdas=LAMBDAS, k=self.k)
        return self

    def predict_reduced(self, reduced):
        if self.regressor is None:
            raise ValueError("the regression is not fitted")
        return self.regressor.predict_features(reduced["features"], reduced["size_wh"])

    def params(self):
        p = {"specs": [s.to_json() for s in self.map_specs], "grid_sizes": list(self.grid_sizes),
             "target": self.target, "k": self.k}
        if self.regressor is not None:
            state = self.regressor.to_dict()
            p.update(lam=state["lam"], weights=state["weights"].tolist())
        return p

    @classmethod
    def from_params(cls, p):
        regressor = None
        if "weights" in p:
            regressor = BoxRegressor.from_dict({
                "grid_sizes": p["grid_sizes"], "lam": p["lam"], "target": p["target"],
                "n_maps": len(p["specs"]), "weights": np.array(p["weights"])})
        return cls([MapSpec.from_json(s) for s in p["specs"]], p["grid_sizes"], p["target"],
                   p["k"], regressor)
