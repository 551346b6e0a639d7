"""Figures that the demo writes (the RoIPool-vs-RoIAlign figure of chapter 08).

    fig = roi_pool_vs_roi_align_figure()
    fig.savefig("roipool_vs_roialign.png")

Left: one RoI at fractional coordinates on an 8x8 feature grid, cut into 2x2 bins (the
pixel model of ``aligned=False``, torchvision's default: the value of cell j sits at
coordinate j, so the cell is drawn from j - 0.5 to j + 0.5).
RoIPool rounds the RoI to whole cells and its bins to whole cells (floor / ceil), so the
cells it reads (shaded) differ from the RoI drawn; RoIAlign keeps the RoI as it is and
reads four bilinear samples per bin (the dots).

Right: the sub-pixel shift experiment. A RoI slides to the right in 0.1-cell steps over a
smooth ramp; the output of one bin is plotted against the shift. RoIPool's output moves in
jumps (it only changes when the rounded RoI moves a whole cell); RoIAlign's moves smoothly.
"""
import numpy as np

from .ops.roi_align import roi_align, roi_align_params
from .ops.roi_pool import roi_pool, roi_pool_bins

GRID = 8          # feature map side, in cells
SAMPLING = 2      # RoIAlign samples per bin side, as torchvision's MultiScaleRoIAlign(sampling_ratio=2)


def sub_pixel_shift(shifts, roi=(1.3, 1.6, 5.4, 5.2), output_size=2, backend="numpy"):
    """Bin (0, 0) of RoIPool and of RoIAlign for a RoI slid right by each of ``shifts``.

    The feature map is the ramp value = column (x) + 0.3 * row, [1, 1, GRID, GRID] float64.
    Returns (pool [T], align [T]) float64."""
    y, x = np.mgrid[0:GRID, 0:GRID].astype(np.float64)  # [GRID, GRID] each
    fmap = (x + 0.3 * y)[None, None]  # [1, 1, GRID, GRID]
    x1, y1, x2, y2 = roi
    rois = np.array([[0, x1 + s, y1, x2 + s, y2] for s in shifts], np.float64)  # [T, 5]
    pool = roi_pool(fmap, rois, output_size, backend=backend)[:, 0, 0, 0]  # [T]
    align = roi_align(fmap, rois, output_size, sampling_ratio=SAMPLING, aligned=False,
                      backend=backend)[:, 0, 0, 0]  # [T]
    return pool, align


def roi_pool_vs_roi_align_figure(roi=(1.3, 1.6, 5.4, 5.2), output_size=2):
    """The two-panel figure described in the module docstring. Returns a matplotlib Figure."""
    # A Figure of its own, not pyplot: no backend is switched (a notebook keeps drawing inline)
    import matplotlib.pyplot as plt  # only for the colour map
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(11, 4.8))
    ax, ax2 = fig.subplots(1, 2)
    rois = np.array([[0, *roi]], np.float64)  # [1, 5]

    # -- left: the grid, RoIPool's cells, RoIAlign's bins and samples --------------------------
    # With aligned=False (torchvision's default) feature value j sits AT coordinate j, so cell
    # j is drawn from j - 0.5 to j + 0.5 and the samples are plotted at their raw coordinates.
    for v in range(GRID + 1):
        ax.axhline(v - 0.5, color="0.85", lw=0.8)
        ax.axvline(v - 0.5, color="0.85", lw=0.8)
    hs, he, ws, we = (a[0] for a in roi_pool_bins(rois, 1.0, output_size, output_size, GRID, GRID))
    colours = plt.cm.tab10(np.arange(output_size * output_size))
    for ph in range(output_size):
        for pw in range(output_size):
            ax.add_patch(Rectangle((ws[pw] - 0.5, hs[ph] - 0.5), we[pw] - ws[pw], he[ph] - hs[ph],
                                   color=colours[ph * output_size + pw], alpha=0.18, lw=0))
    p = roi_align_params(rois, 1.0, output_size, output_size, SAMPLING, aligned=False)
    x1, y1 = p["roi_start_w"][0], p["roi_start_h"][0]
    bw, bh = p["bin_size_w"][0], p["bin_size_h"][0]
    for ph in range(output_size):
        for pw in range(output_size):
            ax.add_patch(Rectangle((x1 + pw * bw, y1 + ph * bh), bw, bh, fill=False,
                                   ec=colours[ph * output_size + pw], lw=1.5, ls="--"))
            for iy in range(SAMPLING):
                for ix in range(SAMPLING):  # sample points at the centres of a 2x2 sub-grid
                    ax.plot(x1 + pw * bw + (ix + 0.5) * bw / SAMPLING,
                            y1 + ph * bh + (iy + 0.5) * bh / SAMPLING, "o", ms=4,
                            color=colours[ph * output_size + pw])
    ax.add_patch(Rectangle((roi[0], roi[1]), roi[2] - roi[0], roi[3] - roi[1], fill=False,
                           ec="k", lw=2))
    ax.set_xlim(-0.5, GRID - 0.5)
    ax.set_ylim(GRID - 0.5, -0.5)
    ax.set_xticks(range(GRID))
    ax.set_yticks(range(GRID))
    ax.set_aspect("equal")
    ax.set_title(f"RoI {roi} on a {GRID}x{GRID} feature map\n"
                 "shaded: cells RoIPool reads; dashed + dots: RoIAlign's bins and samples\n"
                 "(aligned=False: the value of cell j sits at coordinate j)",
                 fontsize=9)

    # -- right: slide the RoI by 0.1 cell -------------------------------------------------------
    shifts = np.round(np.arange(0, 2.01, 0.1), 10)  # [T]
    pool, align = sub_pixel_shift(shifts, roi, output_size)
    ax2.step(shifts, pool, where="post", label="RoIPool (rounds, takes the max)", lw=2)
    ax2.plot(shifts, align, "o-", label="RoIAlign (bilinear, averages)", lw=2, ms=4)
    ax2.set_xlabel("shift of the RoI to the right (feature cells)")
    ax2.set_ylabel("output of bin (0, 0)")
    ax2.set_title("sub-pixel shift: feature value = x + 0.3 y", fontsize=9)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    return fig
