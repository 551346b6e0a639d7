"""Figures of chapter 08 (RoI feature extractors) and the one the demo writes.

    fig = roi_extractors_figure(fmap, roi)       # RoIPool, RoIAlign, RoIWarp, crop_and_resize
    fig = sub_pixel_shift_figure(shifts)         # slide a RoI, watch bin (0, 0) of each
    fig = roi_pool_vs_roi_align_figure()         # the demo's summary (roipool_vs_roialign.png)

Every function returns a matplotlib ``Figure`` of its own (no pyplot state, no backend switch).

Pixel model of the drawings (the geometry of ``aligned=True``): feature pixel ``j`` covers
``[j, j + 1)``, so its value sits at its centre, ``j + 0.5``. A RoI ``(x1, y1, x2, y2)`` in
feature units is drawn as it is. The extractors index pixels by their centres (pixel ``j``
at coordinate ``j``), so a sample they place at coordinate ``t`` is drawn at ``t + 0.5``.
As in the Mask R-CNN paper's Figure 3: the dashed grid is the feature map, the RoI's bins
are solid lines, the dots are sample points.
"""
import numpy as np

from .ops.crop_and_resize import corner_positions, crop_and_resize
from .ops.roi_align import bilinear_axis, roi_align, roi_align_params, sample_positions
from .ops.roi_pool import roi_pool, roi_pool_bins, roi_pool_forward
from .ops.roi_warp import quantize_rois, roi_warp

GRID = 8          # the demo figure's feature map side, in cells
SAMPLING = 2      # RoIAlign samples per bin side, as torchvision's MultiScaleRoIAlign(sampling_ratio=2)
TRUE_BOX = dict(fill=False, ec="k", lw=2, ls="--")  # how the true RoI is drawn in every panel


def smooth_map(y, x):
    """A smooth feature map, defined everywhere: value at (row y, column x), index coordinates
    (pixel j's centre at j). ``feature_map(smooth_map, H, W)`` samples it at the pixel centres."""
    return np.sin(0.7 * x) + np.cos(0.45 * y + 0.3 * x)


def feature_map(f, H, W):
    """``f(y, x)`` at every pixel centre: [1, 1, H, W] float64."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)                          # [H, W] each
    return f(y, x)[None, None]                                            # [1, 1, H, W]


# ------------------------------------------------------------------------- one panel each ---

def draw_feature_grid(ax, plane, title, values=False):
    """The feature map as a pale image with a dashed cell grid; ``values`` writes each cell's
    value in it. plane: [H, W]."""
    H, W = plane.shape
    ax.imshow(plane, cmap="Greys", alpha=0.25, extent=(0, W, H, 0), interpolation="nearest")
    for k in range(max(H, W) + 1):
        ax.axhline(k, color="0.55", lw=0.6, ls=(0, (3, 3)))
        ax.axvline(k, color="0.55", lw=0.6, ls=(0, (3, 3)))
    if values:
        for i in range(H):
            for j in range(W):
                ax.text(j + 0.5, i + 0.5, f"{plane[i, j]:g}", ha="center", va="center",
                        fontsize=8, color="0.35")
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_aspect("equal")
    ax.set_xticks(range(0, W + 1, 2))
    ax.set_yticks(range(0, H + 1, 2))
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=10)


def _box(ax, x1, y1, x2, y2, **kw):
    from matplotlib.patches import Rectangle
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, **kw))


def _bins(ax, x1, y1, x2, y2, S, colour):
    """An S x S bin grid of solid lines over the box."""
    _box(ax, x1, y1, x2, y2, fill=False, ec=colour, lw=2)
    for k in range(1, S):
        ax.plot([x1 + k * (x2 - x1) / S] * 2, [y1, y2], color=colour, lw=1.2)
        ax.plot([x1, x2], [y1 + k * (y2 - y1) / S] * 2, color=colour, lw=1.2)


def draw_roi_pool(ax, fmap, roi, S=2):
    """RoIPool: the rounded box, each bin's cells outlined, each bin's argmax starred.
    fmap: [1, 1, H, W]; roi: (x1, y1, x2, y2) in feature units."""
    plane = fmap[0, 0]
    H, W = plane.shape
    rois = np.array([[0, *roi]], np.float64)                              # [1, 5]
    hs, he, ws, we = (a[0] for a in roi_pool_bins(rois, 1.0, S, S, H, W))  # [S] each
    _, cache = roi_pool_forward(fmap, rois, S)
    arg = cache["argmax"][0, 0]                                           # [S, S] flat h * W + w
    draw_feature_grid(ax, plane, "RoIPool: rounded box, whole-cell bins, max", values=True)
    _box(ax, *roi, **TRUE_BOX)
    _box(ax, ws[0], hs[0], we[-1], he[-1], fill=False, ec="tab:orange", lw=3)
    import matplotlib as mpl
    colours = mpl.colormaps["tab10"](np.arange(S * S))
    for ph in range(S):
        for pw in range(S):
            k = ph * S + pw
            d = 0.08 + 0.07 * k            # inset, so that bins sharing cells stay visible
            _box(ax, ws[pw] + d, hs[ph] + d, we[pw] - d, he[ph] - d, fill=False,
                 ec=colours[k], lw=1.6)
            i, j = divmod(int(arg[ph, pw]), W)
            off = 0.22 * (k - (S * S - 1) / 2) / max(S * S - 1, 1)  # tied argmax cells stay apart
            ax.plot(j + 0.5 + off, i + 0.78, "*", ms=11, color=colours[k], mec="k", mew=0.6)


def draw_roi_align(ax, fmap, roi, S=2, G=SAMPLING, highlight=(0, 0, 1, 0)):
    """RoIAlign (``aligned=True``): the exact bins, G x G samples per bin, and for the sample
    ``highlight = (bin row, bin column, sample row, sample column)`` its four neighbouring
    cells with the bilinear weights the library gives them."""
    plane = fmap[0, 0]
    H, W = plane.shape
    rois = np.array([[0, *roi]], np.float64)                              # [1, 5]
    prm = roi_align_params(rois, 1.0, S, S, G, True)
    ys, _ = sample_positions(prm["roi_start_h"], prm["bin_size_h"], prm["roi_bin_grid_h"], S)
    xs, _ = sample_positions(prm["roi_start_w"], prm["bin_size_w"], prm["roi_bin_grid_w"], S)
    draw_feature_grid(ax, plane, f"RoIAlign: exact bins, {G}x{G} bilinear samples, mean")
    ph, pw, iy, ix = highlight
    y_low, y_high, wy_low, wy_high = (a[0, ph, iy] for a in
                                      bilinear_axis(prm["roi_start_h"], prm["bin_size_h"],
                                                    prm["roi_bin_grid_h"], S, H))
    x_low, x_high, wx_low, wx_high = (a[0, pw, ix] for a in
                                      bilinear_axis(prm["roi_start_w"], prm["bin_size_w"],
                                                    prm["roi_bin_grid_w"], S, W))
    ty, tx = ys[0, ph, iy] + 0.5, xs[0, pw, ix] + 0.5                     # drawn position
    for i, wy in ((y_low, wy_low), (y_high, wy_high)):
        for j, wx in ((x_low, wx_low), (x_high, wx_high)):
            _box(ax, j, i, j + 1, i + 1, color="gold", alpha=0.45, lw=0)
            ax.plot([tx, j + 0.5], [ty, i + 0.5], color="tab:red", lw=0.8)
            ax.plot(j + 0.5, i + 0.5, ".", color="tab:red", ms=5)      # where its value sits
            ox = 0.25 * np.sign(j + 0.5 - tx)                     # the weight away from the lines
            oy = 0.25 * np.sign(i + 0.5 - ty)
            ax.text(j + 0.5 + ox, i + 0.5 + oy, f"{wy * wx:.2f}", ha="center", va="center",
                    fontsize=8, bbox=dict(boxstyle="round,pad=0.1", fc="w", ec="none", alpha=0.8))
    _box(ax, *roi, **TRUE_BOX)
    _bins(ax, *roi, S, "tab:blue")
    X, Y = np.meshgrid(xs[0].ravel() + 0.5, ys[0].ravel() + 0.5)
    ax.plot(X, Y, "o", color="tab:blue", ms=5)
    ax.plot(tx, ty, "o", color="tab:red", ms=7, mec="k")


def draw_roi_warp(ax, fmap, roi, S=2, G=SAMPLING):
    """RoIWarp: RoIAlign's samples (``aligned=False``, as ``roi_warp`` runs it) in the box
    rounded to whole pixels, drawn where they read."""
    plane = fmap[0, 0]
    rois_q = quantize_rois(np.array([[0, *roi]], np.float64), 1.0)       # [1, 5]
    prm = roi_align_params(rois_q, 1.0, S, S, G, False)
    ys, _ = sample_positions(prm["roi_start_h"], prm["bin_size_h"], prm["roi_bin_grid_h"], S)
    xs, _ = sample_positions(prm["roi_start_w"], prm["bin_size_w"], prm["roi_bin_grid_w"], S)
    draw_feature_grid(ax, plane, "RoIWarp: bilinear samples in the rounded box")
    _box(ax, *roi, **TRUE_BOX)
    q = rois_q[0, 1:] + 0.5                                               # where it reads
    _bins(ax, *q, S, "tab:green")
    X, Y = np.meshgrid(xs[0].ravel() + 0.5, ys[0].ravel() + 0.5)
    ax.plot(X, Y, "o", color="tab:green", ms=5)


def draw_crop_and_resize(ax, fmap, roi, S=2):
    """crop_and_resize: one bilinear sample per output cell, the first and last on the box
    edges (its boxes are pixel-centre coordinates, so the RoI is passed as ``roi - 0.5``)."""
    plane = fmap[0, 0]
    x1, y1, x2, y2 = roi
    cx = corner_positions(np.array([x1 - 0.5]), np.array([x2 - 0.5]), S)[0] + 0.5  # [S]
    cy = corner_positions(np.array([y1 - 0.5]), np.array([y2 - 0.5]), S)[0] + 0.5  # [S]
    draw_feature_grid(ax, plane, "crop_and_resize: one sample per cell, on the corners")
    _box(ax, *roi, **TRUE_BOX)
    for c in cx:
        ax.plot([c, c], [cy[0], cy[-1]], color="tab:purple", lw=1)
    for c in cy:
        ax.plot([cx[0], cx[-1]], [c, c], color="tab:purple", lw=1)
    X, Y = np.meshgrid(cx, cy)
    ax.plot(X, Y, "s", color="tab:purple", ms=6)
    for p, yy in enumerate(cy):
        for q, xx in enumerate(cx):
            ax.annotate(f"({p}, {q})", (xx, yy), textcoords="offset points", fontsize=9,
                        xytext=(-6 if q == 0 else 6, 6 if p == 0 else -6), color="tab:purple",
                        ha="right" if q == 0 else "left", va="bottom" if p == 0 else "top")


def roi_extractors_figure(fmap, roi, output_size=2, sampling=SAMPLING, highlight=(0, 0, 1, 0)):
    """The four extractors on one RoI, 2 x 2 panels (RoIPool, RoIAlign / RoIWarp,
    crop_and_resize). fmap: [1, 1, H, W]; roi: (x1, y1, x2, y2) in feature units."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 10.4), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    draw_roi_pool(axes[0], fmap, roi, output_size)
    draw_roi_align(axes[1], fmap, roi, output_size, sampling, highlight)
    draw_roi_warp(axes[2], fmap, roi, output_size, sampling)
    draw_crop_and_resize(axes[3], fmap, roi, output_size)
    fig.suptitle(f"one RoI {tuple(float(v) for v in roi)} (dashed), {output_size}x{output_size} "
                 "output, in feature pixels", fontsize=11)
    return fig


# ------------------------------------------------------------------- the sub-pixel shift ---

def sub_pixel_shift(shifts, roi=(3.0, 4.0, 9.0, 10.0), output_size=2, f=smooth_map, size=16,
                    sampling=SAMPLING, backend="numpy"):
    """Bin (0, 0) of each extractor for the RoI slid right by each of ``shifts``.

    The map is ``feature_map(f, size, size)``; roi is (x1, y1, x2, y2) in feature units.
    Returns a dict of [T] float64 arrays:
    - ``"true"``: f itself (no interpolation) at the exact centre of bin (0, 0), in the pixel
      model of ``aligned=True`` (index coordinate = box coordinate - 0.5);
    - ``"roi_pool"``, ``"roi_warp"``, ``"roi_align"`` (``aligned=True``);
    - ``"crop_and_resize"``, given the box as ``roi - 0.5`` (its pixel-centre coordinates): its
      cell (0, 0) is the bilinear value at the box's top-left corner, not at a bin centre.
    """
    shifts = np.asarray(shifts, np.float64)                              # [T]
    fmap = feature_map(f, size, size)                                     # [1, 1, size, size]
    x1, y1, x2, y2 = roi
    rois = np.array([[0, x1 + s, y1, x2 + s, y2] for s in shifts], np.float64)  # [T, 5]
    S = output_size
    cx = rois[:, 1] + (rois[:, 3] - rois[:, 1]) / (2 * S) - 0.5           # [T] bin (0, 0) centre
    cy = rois[:, 2] + (rois[:, 4] - rois[:, 2]) / (2 * S) - 0.5           # [T]
    return {
        "true": f(cy, cx),
        "roi_pool": roi_pool(fmap, rois, S, backend=backend)[:, 0, 0, 0],
        "roi_warp": roi_warp(fmap, rois, S, 1.0, sampling, backend=backend)[:, 0, 0, 0],
        "roi_align": roi_align(fmap, rois, S, 1.0, sampling, True, backend=backend)[:, 0, 0, 0],
        "crop_and_resize": crop_and_resize(fmap, rois[:, 1:] - 0.5, np.zeros(len(rois), int),
                                           S)[:, 0, 0, 0],
    }


STYLE = {  # name -> (label, plot keywords)
    "true": ("true: f at the bin centre", dict(color="k", lw=2.5, ls="--")),
    "roi_pool": ("RoIPool (rounds, max)", dict(color="tab:orange", lw=2, drawstyle="steps-post")),
    "roi_warp": ("RoIWarp (rounds, bilinear)", dict(color="tab:green", lw=2,
                                                    drawstyle="steps-post")),
    "roi_align": ("RoIAlign (aligned=True)", dict(color="tab:blue", lw=2, marker="o", ms=3)),
    "crop_and_resize": ("crop_and_resize (box corner)", dict(color="tab:purple", lw=1.5,
                                                             marker="s", ms=3)),
}


def plot_shift_curves(ax, shifts, curves):
    """One line per extractor in ``curves`` (``sub_pixel_shift``'s dict) against the shift."""
    for name, c in curves.items():
        label, kw = STYLE.get(name, (name, {}))
        ax.plot(shifts, c, label=label, **kw)
    ax.set_xlabel("shift of the RoI to the right (feature pixels)")
    ax.set_ylabel("output of bin (0, 0)")
    ax.grid(alpha=0.3)


def sub_pixel_shift_figure(shifts, curves=None, **kw):
    """The sub-pixel shift plot, its legend below the axes (it covers no curve).
    curves: ``sub_pixel_shift(shifts, **kw)`` unless given."""
    from matplotlib.figure import Figure
    curves = sub_pixel_shift(shifts, **kw) if curves is None else curves
    fig = Figure(figsize=(9, 5.2), layout="constrained")
    ax = fig.subplots()
    plot_shift_curves(ax, shifts, curves)
    ax.set_title("slide a RoI by 0.1 pixel: the rounding extractors jump, the others glide",
                 fontsize=10)
    fig.legend(loc="outside lower center", ncol=3, fontsize=9, frameon=False)
    return fig


def roi_pool_vs_roi_align_figure(roi=(1.3, 1.6, 5.4, 5.2), output_size=2):
    """The demo's figure: RoIPool and RoIAlign on one RoI of a GRID x GRID map (integer
    values, so RoIPool's argmax can be read off), and the sub-pixel shift of both beside
    the true value at the bin centre. roi in feature units. Returns a matplotlib Figure."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(15, 5.4), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.25])
    fmap = np.random.default_rng(0).integers(0, 10, (1, 1, GRID, GRID)).astype(np.float64)
    draw_roi_pool(axes[0], fmap, roi, output_size)
    draw_roi_align(axes[1], fmap, roi, output_size, SAMPLING, (0, 0, 1, 1))
    shifts = np.round(np.arange(0, 2.01, 0.1), 10)                       # [T]
    curves = sub_pixel_shift(shifts, roi, output_size, size=GRID)
    curves = {k: curves[k] for k in ("true", "roi_pool", "roi_align")}
    plot_shift_curves(axes[2], shifts, curves)
    axes[2].set_title("sub-pixel shift on a smooth map", fontsize=10)
    axes[2].legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9,
                   frameon=False)
    return fig
