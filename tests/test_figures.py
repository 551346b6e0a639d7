"""Smoke tests of mrcnn_np/figures.py: each figure builds, with the right number of axes.
(What the figures show is checked by chapter 08's asserts; no pixels are compared here.)"""
import io

import numpy as np
import pytest

from mrcnn_np import figures

ROI = (1.7, 1.3, 6.2, 5.6)


@pytest.fixture
def fmap():
    return np.random.default_rng(3).integers(0, 10, (1, 1, 8, 8)).astype(np.float64)


def test_roi_extractors_figure(fmap):
    fig = figures.roi_extractors_figure(fmap, ROI)
    assert len(fig.axes) == 4
    fig.savefig(io.BytesIO(), format="png")  # lays out and renders without error


def test_roi_extractors_figure_three_bins(fmap):
    assert len(figures.roi_extractors_figure(fmap, ROI, output_size=3, sampling=1,
                                             highlight=(1, 2, 0, 0)).axes) == 4


def test_sub_pixel_shift_curves_and_figure():
    shifts = np.round(np.arange(0, 1.01, 0.1), 10)
    curves = figures.sub_pixel_shift(shifts)
    assert set(curves) == {"true", "roi_pool", "roi_warp", "roi_align", "crop_and_resize"}
    assert all(c.shape == shifts.shape for c in curves.values())
    fig = figures.sub_pixel_shift_figure(shifts, curves)
    assert len(fig.axes) == 1 and len(fig.legends) == 1


def test_sub_pixel_shift_true_is_linear_map_for_roi_align():
    """On a linear map, the mean of RoIAlign's samples is the value at the bin centre."""
    shifts = np.array([0.0, 0.25, 0.7])
    curves = figures.sub_pixel_shift(shifts, f=lambda y, x: x + 0.3 * y)
    np.testing.assert_allclose(curves["roi_align"], curves["true"])


def test_roi_pool_vs_roi_align_figure():
    fig = figures.roi_pool_vs_roi_align_figure()
    assert len(fig.axes) == 3
    fig.savefig(io.BytesIO(), format="png")
