"""The one backend switch: ``backend="numpy"`` means NumPy everywhere, every op has the same
default, and asking an op for a kernel it lacks is one error type, ``BackendUnavailable``."""
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import kernels
from mrcnn_np import MaskRCNN, ops, postprocess, roi_heads
from mrcnn_np.config import tiny
from mrcnn_np.ops import DEFAULT_BACKEND, BackendUnavailable, resolve_backend
from test_model import _scene


class KernelCalled(Exception):
    pass


def _kernel_modules():
    """Every module of ``kernels/`` that imports here (the CUDA ones need numba.cuda)."""
    mods = []
    for info in pkgutil.iter_modules(kernels.__path__):
        try:
            mods.append(importlib.import_module(f"kernels.{info.name}"))
        except ImportError:  # pragma: no cover - no numba.cuda: its kernels cannot run either
            continue
    return mods


def _patch_every_kernel(monkeypatch):
    """Replace every function defined in kernels/ (njit dispatchers and CUDA launchers) by
    one that raises. Returns the names patched."""
    patched = []
    for mod in _kernel_modules():
        for name, obj in vars(mod).items():
            home = getattr(getattr(obj, "py_func", obj), "__module__", None)
            if callable(obj) and not inspect.isclass(obj) and home == mod.__name__:
                def boom(*args, _name=f"{mod.__name__}.{name}", **kwargs):
                    raise KernelCalled(_name)
                monkeypatch.setattr(mod, name, boom)
                patched.append(f"{mod.__name__}.{name}")
    return patched


def test_backend_numpy_runs_no_kernel_in_a_training_step_or_a_prediction(monkeypatch):
    patched = _patch_every_kernel(monkeypatch)
    for entry in ("kernels.boxes_numba.box_iou_numba", "kernels.nms_numba.nms_sorted_xsweep",
                  "kernels.nms_numba.nms_classwise_sorted",
                  "kernels.roi_align_numba.roi_align_forward_numba",
                  "kernels.roi_align_numba.roi_align_backward_numba"):
        assert entry in patched
    img, tgt = _scene(np.random.default_rng(0))
    model = MaskRCNN(tiny(min_size=(64,), max_size=96, backend="numpy"),
                     rng=np.random.default_rng(0))
    losses = model.forward_backward([img], [tgt], np.random.default_rng(0))
    assert np.isfinite(losses["loss"]) and losses["loss_mask"] > 0
    out = model.predict([img])
    assert len(out[0]["boxes"]) > 0  # the untrained model detects: NMS and the mask head ran

    # the control: the same model on "numba" does reach the patched kernels
    object.__setattr__(model, "cfg", tiny(min_size=(64,), max_size=96, backend="numba"))
    with pytest.raises(KernelCalled):
        model.forward_backward([img], [tgt], np.random.default_rng(0))


def _ops_with_backend():
    """Every public function of the ops, the heads and post-processing that takes ``backend``."""
    found = {}
    mods = [importlib.import_module(f"mrcnn_np.ops.{i.name}")
            for i in pkgutil.iter_modules(ops.__path__)]
    mods = [m for m in mods if m.__name__ != "mrcnn_np.ops._backend"]  # the switch itself
    for mod in mods + [roi_heads, postprocess]:
        for name, fn in vars(mod).items():
            if (inspect.isfunction(fn) and not name.startswith("_")
                    and fn.__module__ == mod.__name__
                    and "backend" in inspect.signature(fn).parameters):
                found[f"{mod.__name__}.{name}"] = fn
    return found


def test_every_op_has_the_same_default():
    found = _ops_with_backend()
    for must in ("box_iou", "nms", "batched_nms", "roi_align_forward", "roi_align", "roi_pool",
                 "roi_warp", "crop_and_resize", "build_rpn_targets", "generate_proposals",
                 "multi_scale_roi_align_forward", "select_training_samples",
                 "project_masks_on_boxes", "postprocess_detections"):
        assert any(k.endswith("." + must) for k in found), must
    defaults = {k: inspect.signature(fn).parameters["backend"].default for k, fn in found.items()}
    assert set(defaults.values()) == {DEFAULT_BACKEND}, defaults


def test_a_kernel_an_op_lacks_is_backend_unavailable():
    x = np.zeros((1, 1, 4, 4), np.float32)
    box = np.array([[0, 0, 3, 3]], np.float32)
    cases = [lambda: ops.box_iou(box, box, backend="cuda"),
             lambda: ops.roi_pool(x, np.array([[0, 0, 0, 3, 3]], np.float32), 2, backend="cuda"),
             lambda: ops.crop_and_resize(x, box, [0], 2, backend="numba"),
             lambda: ops.crop_and_resize(x, box, [0], 2, backend="cuda")]
    for case in cases:
        with pytest.raises(BackendUnavailable, match="has no"):
            case()
    assert issubclass(BackendUnavailable, ValueError)
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("gpu")
    # without a kernel, "auto" and "numpy" run the NumPy definition
    ref = ops.crop_and_resize(x + 1, box, [0], 2, backend="numpy")
    np.testing.assert_array_equal(ops.crop_and_resize(x + 1, box, [0], 2, backend="auto"), ref)
    assert resolve_backend("auto", "crop_and_resize", kernels=()) == "numpy"
    assert resolve_backend("auto", "box_iou", kernels=("numba",)) == "numba"
