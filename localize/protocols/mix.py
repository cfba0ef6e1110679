"""The ``mix`` box protocol: four saliency maps, Khan et al.'s recipe, one nested grid search.

It was the ``best`` preset until the objectness map of :mod:`sensloc.localize.protocols.objectness` (which boxes
its map with this module's :meth:`BestBoxes.fit_factors`) passed it: 72.1% against 70.4%.
The class keeps its name and its ``kind`` ("best"), so box models saved before still load.

What it does
------------
Every map kind goes through Khan et al.'s recipe (:func:`sensloc.localize.protocols.khan_heat`:
positive part, normalized, Gaussian-smoothed by ``sigma``, normalized, cut below its mean); the
maps are mixed by their geometric mean ``(m_1 m_2 ... m_K)^(1/K)``, which is hot only where
*every* method agrees; the mix is damped near the border (weight 0.5 at the edge rising to 1 at
``border_width`` of the side); the union of the pixels above ``fraction`` of the mix's maximum
is boxed (Simonyan et al.'s union box), and that box is finally scaled about its centre by
``scale``. :meth:`BestBoxes.fit` chooses ``(sigma, border_width, fraction, scale)`` jointly by
CorLoc on the training set it is given, so in :func:`sensloc.localize.protocols.cross_validated_boxes`
the search is nested inside each training fold and never sees the test fold.

Why this design (measured)
--------------------------
SqueezeNet 1.0 with its real ImageNet weights, 692 ILSVRC2012 validation photos (649 squashed
to 227 x 227 plus 43 full-size, small-object photos), ground-truth class known, 5-fold
cross-validated CorLoc with seed 0, 95% bootstrap intervals:

=================================================================  ======================
protocol                                                           CV CorLoc (95% CI)
=================================================================  ======================
whole image / centred mean box                                     44.5% / 49.4%
Grad-CAM fire9, largest component                                  58.8% (55.2-62.4)
vanilla gradient, union                                            59.2% (55.6-62.9)
Khan: DeepLIFT (zero) x guided, sigma 4, union                     67.3% (63.9-70.8)
+ Grad-CAM fire9 and |gradient| in the geometric mean              68.9% (65.5-72.4)
+ DeepLIFT against a blurred reference instead of zero             69.7% (66.2-73.0)
this protocol (nested search over sigma, border, fraction, scale)  70.4% (66.9-73.7)
=================================================================  ======================

(:data:`MEASURED` has the details.) Each added map removes hot pixels that only one method
produces (the union box's main failure: a stray blob far from the object stretches the box);
Grad-CAM contributes the object's extent, the pixel-level maps its outline; the search then
picks sigma 4, border 0.1, the lowest fraction (the mean cuts already threshold the mix) and a
box shrunk to 0.95 in every fold. What did *not* help, measured the same way (all 64-70%):
per-image threshold choice by a closed-form candidate scorer (ridge on objectness features:
heat mass inside, density, ring contrast, area), by kernel ridge or k-nearest neighbours on
the box-area-versus-threshold profile, or by bins of a map statistic; least-squares corner
regression from the thresholded boxes (64-66%: it regresses towards the mean box); per-side
offsets (68.9%); consensus of several protocols' boxes (65-69%); connected-component filters
(the largest or the heaviest components, 40-69%); a centre prior; percentile-based levels;
other cuts than the mean; weighted geometric means; Grad-CAM of lower layers (fire5/7/8:
47-59% alone, no gain mixed); the class activation map (Grad-CAM at ``relu_conv_final``,
65.2% alone, no gain mixed); SmoothGrad (58.8% alone, 64-66% mixed); DeepLIFT with a black
reference (69.2%).

Views of the image (measured, none adopted). :class:`sensloc.saliency.maps.MapSpec` can explain the
mirrored photo (``mirror=True``, the map mirrored back) or the photo resized by ``zoom`` (the
map resized back; SqueezeNet is fully convolutional), and a factor of the geometric mean can be
the :func:`view_average` of several views of one method (``BestBoxes([(spec, mirrored), ...])``).
Same photos, folds and nested search (dl, gb, gr, gc: the four maps above; ``:m`` mirrored,
``:z1.5`` zoomed by 1.5 to 340 px; ``a,b`` one factor averaging views, ``|`` between factors):

=============================================================  ======================
factors of the geometric mean                                  CV CorLoc (95% CI)
=============================================================  ======================
dl | gb | gr | gc (this protocol, reproduced)                  70.4% (66.9-73.7)
dl,dl:m | gb,gb:m | gr,gr:m | gc,gc:m (flip averaging)         69.5% (66.0-72.8)
dl | dl:m | gb | gb:m | gr | gr:m | gc | gc:m (8 factors)      69.4% (65.9-72.7)
dl | gb | gr | gc,gc:m                                         69.1% (65.6-72.5)
dl,dl:z1.5 | gb,gb:z1.5 | gr,gr:z1.5 | gc,gc:z1.5              69.8% (66.3-73.1)
the same, sigma searched over 4, 6, 8, 10 (6 was the edge)     69.5% (66.0-72.8)
dl:z1.5 | gb:z1.5 | gr:z1.5 | gc:z1.5 (zoomed maps only)       68.6% (65.2-72.1)
dl,dl:m,dl:z1.5 | ... (image, mirror and zoom averaged)        69.8% (66.3-73.1)
dl | gb | gr | gc,gc:z1.5 (finer Grad-CAM cells)               70.5% (67.1-73.8)
dl | gb | gr | gc:z1.5                                         69.1% (65.6-72.5)
nested search also choosing among the plain, flip-averaged,
zoom-averaged and finer-Grad-CAM mixes (by training CorLoc)    68.5% (65.0-72.0)
=============================================================  ======================

Averaged views are smoother maps (the search moves to sigma 6 and higher fractions), but the
union box's failures, stray context blobs and small or repeated objects, are shown by every
view alike, so they stay. Every difference lies well inside the 95% intervals (about
+-3.4 points).

Occlusion sensitivity and Grad-CAM at zoom 2 (measured, none adopted). ``oc`` is
:func:`saliency.occlusion` with a 48 px patch of the mean colour (0 in preprocessed space)
sliding by 24 px, a 9 x 9 grid of 81 patches per photo, channel sum (``MapSpec.make(
"occlusion", "sum", window=48, stride=24, baseline=0.0)``): 35 min of forward passes for the 692
photos (3.1 s per photo, one thread, the other core busy with another job), against 3.7 min
for the four maps above and 2.5 min for Grad-CAM at zoom 2 (``gc:z2``, 454 px). Same photos,
folds and nested search:

=============================================================  ======================
factors of the geometric mean                                  CV CorLoc (95% CI)
=============================================================  ======================
oc alone (the same recipe and search)                          58.2% (54.6-61.8)
dl | gb | gr | gc | oc                                         65.0% (61.6-68.5)
dl | gb | gr | oc (occlusion in Grad-CAM's place)              65.8% (62.3-69.2)
dl | gb | gr | gc,oc (one coarse factor averaging both)        68.6% (65.2-72.1)
dl | gb | gr | gc,gc:z2                                        71.0% (67.5-74.3)
dl | gb | gr | gc:z2                                           69.5% (66.0-72.8)
dl | gb | gr | gc | gc:z2                                      69.9% (66.5-73.3)
dl | gb | gr | gc,gc:z1.5,gc:z2                                70.4% (66.9-73.7)
dl | gb | gr | gc,gc:z1.5 (reproduced from the table above)    70.5% (67.1-73.8)
=============================================================  ======================

Occlusion's map is made of 24 px cells. Alone it boxes no object below 10% of the image (0 of
67) and 80% of those above half (against 3% and 91% for this protocol). As a fifth factor it
loses large objects (CorLoc 83% instead of 91% above half the image, 74% instead of 83%
between a quarter and a half) for a small gain between 10% and 25% (40% instead of 37% of
122). Averaging Grad-CAM at zoom 2 into the Grad-CAM factor is the best variant measured
(+0.6 point, well inside the interval): it boxes more of the objects above half the image
(96% of 308) but none of the 67 below 10%. Not measured, for time: several occlusion patch
sizes (a 64 px patch with stride 32 would cost some 20 min more; occlusion's 58% alone gave
little reason).

Box shapes, a second look and the classifier's opinion (measured, none adopted). Three ways to
stop boxing the support of the mix, each aimed at a failure above. Same photos, folds and
nested search (sigma and border as above, and the scale, except for the moment box, where
``k`` takes its part):

1. Robust boxes from the same mix ``M`` (against stray blobs): per axis, the interval between
   the ``q`` and ``1 - q`` quantiles of the mass of ``M^p`` (row sums for y, column sums for x,
   each pixel's mass spread evenly over it; ``q`` in 0-0.1, scale in 0.9-1.3); the per-axis
   moment box ``mu +- k sd`` of the same marginals (``k`` in 1-2.5); and the average of the
   support box with either (its weight, 0.25-0.75, searched too).
2. A second look (against small objects): the support box of the mix at fixed, untuned
   values (Khan's sigma 4 and border 0.1, fraction 0.02, scale 1), enlarged 1.2 times about
   its centre, cut from the network input and resized to 227 x 227; the four maps computed
   again on that crop (3.1 min for the 692 photos); ``:crop`` below is a crop map resized
   back into its place in the image's frame, zero outside. A prototype outside the library:
   :class:`sensloc.saliency.maps.MapSpec` has no per-image crop.
3. The classifier as judge (against context and groups): 16 candidate boxes per photo from
   the mix at sigma 4 and border 0.1 (union boxes at fractions 0.02-0.6, largest components at
   0.02-0.5; the best candidate would give 84%), each cut out, resized to 227 x 227 and
   classified by the same SqueezeNet (11 min); per photo the candidate maximizing
   ``log p(true class | crop) + lambda log(area)``, ``lambda`` in -1..5 searched in the folds
   (a very large ``lambda`` is the support box), or the candidate a logistic regression fitted
   in the folds rates most likely a hit (features: ``log p`` of the crop against the whole
   image's and the support box's, the log areas, the candidate's index).

=============================================================  ======================
variant                                                        CV CorLoc (95% CI)
=============================================================  ======================
quantile box of ``M``, ``q`` searched (0 in every fold)        70.4% (66.9-73.7)
quantile box, ``q`` fixed at 0.005 / 0.01 / 0.02 / 0.05 / 0.1  68.2 / 68.4 / 67.9 / 66.3 / 50.4%
quantile box of ``M^0.5`` / of ``M^2``, ``q`` searched         69.7% (66.2-73.0) / 70.4%
moment box ``mu +- k sd``                                      61.7% (58.1-65.2)
average of the support box and the moment box                  67.2% (63.7-70.7)
average of the support box and the quantile box                69.7% (66.2-73.0)
recipe re-run on the crop's part of the image's maps (no
new maps; sigma 2 / 4 / 6 fixed, fraction 0.02, scale 1)       67.9 / 66.5 / 64.0%
second look alone (box in the crop, mapped back)               68.9% (65.5-72.4)
nested search over the first and the second look's grids       70.4% (first look in every fold)
dl,dl:crop | gb,gb:crop | gr,gr:crop | gc,gc:crop              70.8% (67.5-74.1)
dl | dl:crop | gb | gb:crop | gr | gr:crop | gc | gc:crop      69.1% (65.6-72.5)
dl | gb | gr | gc,gc:crop                                      69.2% (65.8-72.5)
dl,dl:crop | gb,gb:crop | gr,gr:crop | gc                      69.1% (65.6-72.5)
dl,dl:crop | gb,gb:crop | gr,gr:crop | gc,gc:z2                70.2% (66.8-73.6)
dl,dl:crop | gb,gb:crop | gr,gr:crop | gc,gc:z2,gc:crop        71.1% (67.8-74.4)
dl | gb | gr | gc,gc:z2,gc:crop                                69.4% (65.9-72.7)
dl | gb | gr | gc,gc:z2, sigma searched over 2, 4, 6, 8        71.0% (67.5-74.3)
classifier's choice among the 10 union boxes                   69.2% (65.8-72.5)
the same among all 16 candidates                               68.6% (65.2-72.1)
the same among the union boxes at fractions 0.02-0.3           69.4% (65.9-72.7)
``lambda`` fixed at 0 / 0.5 / 1 (10 union boxes)               68.9 / 69.8 / 69.9%
logistic regression's choice (10 or 16 candidates)             68.9-69.8%
=============================================================  ======================

Trimming mass never paid: the search always went back to ``q = 0``, the support box, and
every fixed ``q > 0`` lost more large objects than it gained small ones; the stray blobs that
stretch the union box carry real mass. The second look finds more objects between 10% and
25% of the image (41% instead of 37% of 122) but no more below 10% (2 of 67 either way) and
fewer between 25% and 50% (76% instead of 83% of 195): the first box covers about half the
image, so the crop enlarges the object only some 1.2 times in width and height and keeps most
of the context. The classifier wants context: the true class's median probability is 0.77 on
the whole image, 0.61 on the support box and 0.19 on the union box at fraction 0.4, so its
score says how much context a crop keeps more than whether it holds the object. Every
difference again lies well inside the 95% intervals.

The recipe family of this protocol was itself chosen by looking at cross-validated results
on these same 692 photos (a mild selection effect on the numbers above; the half of the data
kept aside is the independent check).

Finer class maps and a size prior from the classifier (measured, none adopted). Two more
families, both prototypes outside the library on the same photos, folds and nested search:

1. LayerCAM (Jiang et al., 2021: ``relu(sum_k relu(df_t/dA_k) * A_k)``, the gradient weighting
   each cell instead of Grad-CAM's channel mean) at fire5, fire7, fire8 and fire9, and
   Grad-CAM++ at fire9 (``alpha = g^2 / (2 g^2 + sum_ab A g^3)``), at zoom 1 and 2.
2. The object's size predicted from the classifier's features: ridge regression (closed form,
   ``lambda`` 1-3000) of the log area of the largest ground-truth box on fire9's (and fire5's,
   fire7's) channel means and the log areas of the mix's union boxes at 24 fractions, then per
   photo the union box whose area is nearest the prediction, or a blend of that area with the
   support box's, or the prediction used only below an area cut. (Here ``lambda``, the
   weight and the cut were swept over all photos, not nested: optimistic, and still no gain.)

=============================================================  ======================
variant                                                        CV CorLoc (95% CI)
=============================================================  ======================
LayerCAM fire9 / fire8 / fire7 / fire5 alone (the recipe)      66.0 / 65.5 / 65.5 / 66.3%
Grad-CAM++ fire9 alone                                         64.5% (61.0-67.9)
LayerCAM fire9 / fire7 alone at zoom 2                         65.6 / 63.9%
dl | gb | gr | LayerCAM fire9 / fire8 / fire7 / fire5          68.5 / 68.8 / 69.8 / 68.8%
dl | gb | gr | gc,LayerCAM fire9 / fire8 / fire7 / fire5       70.1 / 69.7 / 68.6 / 69.7%
dl | gb | gr | Grad-CAM++ (or gc,Grad-CAM++)                   69.2% (69.5%)
dl | gb | gr | LayerCAM fire9 zoom 2 (or gc,...)               69.9% (69.4%)
union box with the area nearest the predicted area             45-61%
blend of predicted and support-box log area, weight 0.1-0.7    64.2-70.4% (0 is best)
prediction only where it is below 5-30% of the image           64.3-70.4%
oracle: the union box nearest the TRUE area                    77.3%
=============================================================  ======================

A separate smoothing width for the pixel-level maps (2, 4, 6, 8) and for Grad-CAM (0.5, 2, 4),
searched jointly in the folds: the search picks 4 and 4 in every fold, 70.4% again. Other
factor sets: DeepLIFT against the blurred and the zero reference averaged in one factor 69.8%,
as two factors 68.6%; without guided backprop (dl | gr | gc) 70.4%, without the gradient
(dl | gb | gc) 69.4%, the two averaged in one factor 69.4%.

LayerCAM is by far the better class map alone (66% against Grad-CAM's 58.8%: the cell-wise
weighting keeps the object's parts that the channel mean averages away), but inside the
geometric mean the pixel-level maps already draw the outline, and it adds nothing. The
classifier's features explain a third of the variance of the object's log area (R^2 0.31
against 0.04 for the maps' own box-area profile), not enough: every use of the prediction
loses more large objects than it gains small ones.

The limit is in the maps: objects smaller than a quarter of the image are rarely boxed (3% of
the 67 objects below 10% of the image area, 37% of the 122 between 10% and 25%, against 83%
and 91% above), nor are images with several instances (35% of 136, the union box spans the
group), because the maps also light up context and the other instances; a per-image oracle
choice of the threshold would reach 83%, but none of the map statistics tried predicts it
well (AUC 0.65-0.68).
"""
import numpy as np

from sensloc.saliency import postprocess

from sensloc.localize.boxes import as_boxes
from sensloc.saliency.maps import MapSpec
from sensloc.localize.protocols import FRACTIONS, Protocol, last_spatial_layer

#: Smoothing widths (pixels of the input) tried by :meth:`BestBoxes.fit`.
SIGMAS = (2.0, 4.0, 6.0)
#: Widths of the border band (fractions of each side) tried by :meth:`BestBoxes.fit`.
BORDER_WIDTHS = (0.1, 0.2)
#: Box scale factors (about the box centre) tried by :meth:`BestBoxes.fit`.
SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)
#: Images processed at a time (bounds the memory of the smoothed float maps).
CHUNK = 64

#: The numbers that justify the preset (SqueezeNet 1.0, 2 cores shared with other jobs).
MEASURED = {
    "data": "692 ILSVRC2012 val photos (imagenet-val-227 + imagenet-val-full), SqueezeNet 1.0",
    "protocol": "sensloc.evaluation.runner.evaluate, 5-fold cross_validated_boxes, seed 0",
    "corloc_gt_known": 0.704, "ci95": (0.669, 0.737), "corloc_top1": 0.522,
    "corloc_by_gt_area": {"<10%": 0.030, "10-25%": 0.369, "25-50%": 0.826, ">=50%": 0.906},
    "chosen_in_every_fold": {"sigma": 4.0, "border_width": 0.1, "fraction": 0.02, "scale": 0.95},
    "fit_seconds_554_maps": 11.6,
}


def recipe(heat, sigma):
    """Khan et al.'s recipe for one map without the border mask, (N, H, W) -> float32.

    ``max(m, 0)``, ``/ max``, Gaussian smoothing by ``sigma``, ``/ max``, zero below the
    map's mean: :func:`sensloc.localize.protocols.khan_heat` with ``border_width=0``.
    """
    m = postprocess.positive_part(np.asarray(heat, np.float32))
    m = postprocess.normalize(postprocess.gaussian_smooth(postprocess.normalize(m), sigma))
    return postprocess.zero_below_mean(m)


def view_average(views):
    """One map from several views of the same method, (N, H, W): ``mean_v m_v^+ / max m_v^+``.

    Each view (the image, its mirror, a zoomed copy: :class:`sensloc.saliency.maps.MapSpec`'s
    ``mirror`` and ``zoom``) is made positive and divided by its own maximum first, because a
    zoomed view's gradients have another scale; a view with no positive value counts as zero.
    Evidence that only one of ``V`` views shows (noise, an asymmetric stray blob) is divided
    by ``V``, evidence that all show is kept.

    Parameters
    ----------
    views : sequence of V arrays (N, H, W)

    Returns
    -------
    (N, H, W) float32 array in [0, 1]
    """
    views = [np.asarray(v) for v in views]
    if not views:
        raise ValueError("view_average needs at least one view")
    if any(v.shape != views[0].shape or v.ndim != 3 for v in views):
        raise ValueError("the views must share one (N, H, W) shape; got "
                         f"{[v.shape for v in views]}")
    total = np.zeros(views[0].shape, np.float32)
    for v in views:
        total += postprocess.normalize(postprocess.positive_part(np.asarray(v, np.float32)))
    return total / len(views)


def mixed_heat(maps, sigma, border_width=0.0, border_weight=0.5):
    """Khan's recipe on every map, geometric mean over the maps, border mask.

    Parameters
    ----------
    maps : sequence of K arrays (N, H, W)
        One raw heat map per method (any sign; the positive part is taken).
    sigma : float
        Gaussian smoothing in pixels (:func:`sensloc.localize.protocols.khan_heat`).
    border_width, border_weight : float
        The border mask (:func:`saliency.postprocess.border_mask`), applied once to the mix;
        the same mask on every map would give the same result, since
        ``prod (b m_k)^(1/K) = b prod m_k^(1/K)``.

    Returns
    -------
    (N, H, W) float32 array, non-negative
    """
    maps = [np.asarray(m) for m in maps]
    if not maps:
        raise ValueError("mixed_heat needs at least one map")
    n = len(maps[0])
    if any(m.shape != maps[0].shape or m.ndim != 3 for m in maps):
        raise ValueError(f"the maps must share one (N, H, W) shape; got {[m.shape for m in maps]}")
    out = np.empty(maps[0].shape, np.float32)
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        mix = np.ones(maps[0][part].shape, np.float64)
        for m in maps:
            mix *= recipe(m[part], sigma)
        out[part] = mix ** (1.0 / len(maps))
    return postprocess.apply_border_mask(out, border_width, border_weight)


def union_boxes(heat, fractions):
    """Union boxes of ``heat >= f * max`` for many fractions at once, ``(N, F, 4)``.

    Identical to :func:`sensloc.localize.boxes.boxes_from_heatmap` with ``mode="union"`` (a map with
    no positive value gives the whole image) but computed from the row and column maxima:
    a row holds a hot pixel exactly when its maximum reaches the level, so each fraction
    costs ``O(H + W)`` per map instead of ``O(H W)``.
    """
    heat = np.asarray(heat)
    n, h, w = heat.shape
    rows, cols = heat.max(axis=2), heat.max(axis=1)
    peak = rows.max(axis=1)
    out = np.empty((n, len(fractions), 4))
    for j, f in enumerate(fractions):
        level = (f * peak)[:, None]
        r, c = rows >= level, cols >= level
        box = np.stack([c.argmax(1), r.argmax(1), w - c[:, ::-1].argmax(1),
                        h - r[:, ::-1].argmax(1)], axis=1).astype(np.float64)
        box[peak <= 0] = [0, 0, w, h]
        out[:, j] = box
    return out


def scale_about_centre(boxes, scale, size_wh):
    """Boxes ``(..., 4)`` scaled by ``scale`` about their centres, clipped to the image."""
    boxes = np.asarray(boxes, np.float64)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = (boxes[..., 2:] - boxes[..., :2]) / 2 * scale
    limit = np.concatenate([size_wh, size_wh]).astype(np.float64)
    return np.clip(np.concatenate([centre - half, centre + half], axis=-1), 0, limit)


def _padded_truth(gt_boxes):
    """N arrays (K_n, 4) -> (N, K, 4) boxes and (N, K) validity, padded with empty boxes."""
    boxes = [as_boxes(g, "gt_boxes").reshape(-1, 4) for g in gt_boxes]
    k = max(len(b) for b in boxes)
    out, valid = np.zeros((len(boxes), k, 4)), np.zeros((len(boxes), k), bool)
    for i, b in enumerate(boxes):
        out[i, :len(b)], valid[i, :len(b)] = b, True
    return out, valid


def best_overlap(candidates, truth, valid):
    """``max_k IoU(candidates[n, f], truth[n, k])`` for (N, F, 4) candidates -> (N, F)."""
    a, b = candidates[:, :, None, :], truth[:, None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    overlap = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return np.where(valid[:, None, :], overlap, -1.0).max(axis=2)


class BestBoxes(Protocol):
    """Geometric mean of several maps through Khan's recipe, union box, scaled; all tuned.

    Parameters
    ----------
    specs : sequence of MapSpec, or of tuples of MapSpec
        The factors of the geometric mean (see :func:`best_protocol`); a tuple is one factor,
        the :func:`view_average` of its maps (views of one method: mirrored, zoomed).
    sigmas, border_widths, fractions, scales : sequences of float
        The grid :meth:`fit` searches.
    border_weight : float
        The border mask's weight at the edge (Khan et al.'s 0.5, fixed).
    sigma, border_width, fraction, scale : float, optional
        The chosen values; all four given means fitted (``fit`` chooses them again).
    threshold : float
        IoU needed for a hit when scoring the grid (0.5, CorLoc's).

    Notes
    -----
    ``fit`` scores every ``(sigma, border_width, fraction, scale)`` by CorLoc on the images it
    is given and keeps the best; among equal scores it prefers the scale nearest 1, then the
    sigma nearest 4, the narrower border and the smallest fraction (the order of
    :meth:`grid`), so that ties never depend on anything but the training data.
    """

    kind = "best"

    def __init__(self, specs, sigmas=SIGMAS, border_widths=BORDER_WIDTHS, fractions=FRACTIONS,
                 scales=SCALES, border_weight=0.5, sigma=None, border_width=None, fraction=None,
                 scale=None, threshold=0.5, train_corloc=None):
        self.factors = tuple((f,) if isinstance(f, MapSpec) else tuple(f) for f in specs)
        if not self.factors or not all(self.factors):
            raise ValueError("BestBoxes needs at least one map kind, and every factor one map")
        if not all(isinstance(s, MapSpec) for f in self.factors for s in f):
            raise ValueError("the factors of BestBoxes must be MapSpecs or tuples of MapSpecs")
        self.map_specs = tuple(dict.fromkeys(s for f in self.factors for s in f))
        self.sigmas = tuple(float(s) for s in sigmas)
        self.border_widths = tuple(float(b) for b in border_widths)
        self.fractions = tuple(float(f) for f in fractions)
        self.scales = tuple(float(s) for s in scales)
        if not (self.sigmas and self.border_widths and self.fractions and self.scales):
            raise ValueError("every grid of BestBoxes needs at least one value")
        self.border_weight, self.threshold = float(border_weight), float(threshold)
        self.sigma, self.border_width = sigma, border_width
        self.fraction, self.scale = fraction, scale
        self.train_corloc = train_corloc

    @property
    def fitted(self):
        return None not in (self.sigma, self.border_width, self.fraction, self.scale)

    def _maps(self, maps):
        missing = [s.name for s in self.map_specs if s not in maps]
        if missing:
            raise KeyError(f"{self.kind} needs the maps {missing}")
        return [maps[f[0]] if len(f) == 1 else view_average([maps[s] for s in f])
                for f in self.factors]

    def grid(self):
        """The (sigma, border_width, scale) settings in preference order (ties go first)."""
        sigmas = sorted(self.sigmas, key=lambda s: (abs(s - 4.0), s))
        scales = sorted(self.scales, key=lambda s: (abs(s - 1.0), s))
        return [(s, b, c) for c in scales for s in sigmas for b in sorted(self.border_widths)]

    def scores(self, maps, gt_boxes):
        """Training CorLoc of every grid point: {(sigma, border_width, scale): (F,) array}."""
        return self.search(self._maps(maps), gt_boxes)

    def search(self, raw, gt_boxes):
        """:meth:`scores` of the factor maps themselves, a list of K arrays (N, H, W)."""
        if len(gt_boxes) != len(raw[0]):
            raise ValueError(f"{len(raw[0])} maps but ground truth for {len(gt_boxes)} images")
        size = np.array([raw[0].shape[2], raw[0].shape[1]], np.float64)
        truth, valid = _padded_truth(gt_boxes)
        table = {}
        for sigma in self.sigmas:
            mix = mixed_heat(raw, sigma)  # the border mask multiplies the mix: apply it after
            for width in self.border_widths:
                heat = postprocess.apply_border_mask(mix, width, self.border_weight)
                boxes = union_boxes(heat, self.fractions)
                for scale in self.scales:
                    overlap = best_overlap(scale_about_centre(boxes, scale, size), truth, valid)
                    table[(sigma, width, scale)] = (overlap >= self.threshold).mean(axis=0)
        return table

    def fit(self, maps, gt_boxes):
        return self.fit_factors(self._maps(maps), gt_boxes)

    def fit_factors(self, raw, gt_boxes):
        """:meth:`fit` on the factor maps themselves, a list of K arrays (N, H, W)."""
        table = self.search(raw, gt_boxes)
        best, choice = -1.0, None
        for sigma, width, scale in self.grid():
            corloc = table[(sigma, width, scale)]
            j = int(np.argmax(corloc))  # the smallest fraction among ties
            if corloc[j] > best:
                best, choice = float(corloc[j]), (sigma, width, self.fractions[j], scale)
        self.sigma, self.border_width, self.fraction, self.scale = choice
        self.train_corloc = best
        return self

    def heat(self, maps):
        """The fitted mix of the maps, (N, H, W)."""
        if not self.fitted:
            raise ValueError(f"{self.kind} is not fitted: call fit or give all four parameters")
        return mixed_heat(self._maps(maps), self.sigma, self.border_width, self.border_weight)

    def predict(self, maps):
        heat = self.heat(maps)
        size = np.array([heat.shape[2], heat.shape[1]], np.float64)
        boxes = union_boxes(heat, [self.fraction])[:, 0]
        return scale_about_centre(boxes, self.scale, size)

    def params(self):
        return {"specs": [[s.to_json() for s in f] for f in self.factors],
                "sigmas": list(self.sigmas),
                "border_widths": list(self.border_widths), "fractions": list(self.fractions),
                "scales": list(self.scales), "border_weight": self.border_weight,
                "threshold": self.threshold, "sigma": self.sigma,
                "border_width": self.border_width, "fraction": self.fraction,
                "scale": self.scale, "train_corloc": self.train_corloc}

    @classmethod
    def from_params(cls, p):
        # Box models written before factors existed list one JSON string per factor.
        factors = [[f] if isinstance(f, str) else f for f in p["specs"]]
        return cls([tuple(MapSpec.from_json(s) for s in f) for f in factors], p["sigmas"],
                   p["border_widths"], p["fractions"], p["scales"], p["border_weight"], p["sigma"],
                   p["border_width"], p["fraction"], p["scale"], p["threshold"],
                   p.get("train_corloc"))


def best_specs(architecture):
    """The maps of the ``mix`` preset (and the evidence of ``best``): DeepLIFT (blurred
    reference, channel sum), guided backprop and the vanilla gradient (max |.| over
    channels), Grad-CAM at the last spatial layer (``fire9`` for SqueezeNet, ``relu5_3`` for
    VGG)."""
    return (MapSpec.make("deeplift", "sum", reference="blur"),
            MapSpec.make("guided", "max_abs"),
            MapSpec.make("gradient", "max_abs"),
            MapSpec.make("grad_cam", layer=last_spatial_layer(architecture)))


def best_protocol(architecture):
    """A fresh, unfitted ``mix`` protocol for a network architecture (e.g. ``"vgg16"``)."""
    return BestBoxes(best_specs(architecture))
