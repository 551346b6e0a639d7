"""Import torchvision Mask R-CNN weights (chapter 13).

Our parameter names were chosen to equal torchvision's ``maskrcnn_resnet50_fpn`` state_dict
keys, so the "mapping" is a table of identities with three exceptions, all explained here:

- ``*.num_batches_tracked`` (a BatchNorm counter used only for momentum=None) has no role
  in a frozen or eval-mode batch norm: it is dropped.
- torchvision built with ``weights=None`` uses ``nn.BatchNorm2d`` in the backbone, the
  pretrained one ``FrozenBatchNorm2d``; both store ``weight, bias, running_mean,
  running_var`` under the same keys, and in eval mode both compute the same affine map.
- tensors become float32 NumPy arrays (ConvTranspose2d keeps torch's [C_in, C_out, kh, kw]).

torch is imported only here, and only to read a ``.pth`` file
(``torch.load(..., weights_only=True)``, which refuses to run pickled code).
"""
import os
import pickle
import zipfile

import numpy as np

DROPPED_SUFFIXES = ("num_batches_tracked",)


class NotAStateDict(ValueError):
    """A ``.pth`` that is not a plain state_dict; the message is one line naming the file."""


def _to_numpy(v):
    if hasattr(v, "detach"):  # a torch tensor, without importing torch
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def torchvision_to_numpy(state_dict_or_path):
    """A torchvision state_dict (dict of tensors or arrays), a ``.pth`` path or an ``.npz``
    path -> dict name -> float32 ndarray with our names."""
    sd = state_dict_or_path
    if isinstance(sd, (str, os.PathLike)):
        path = os.fspath(sd)
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        sd = _torch_load(path)
        if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
            sd = sd["model"]  # a torchvision reference-script checkpoint
        if not isinstance(sd, dict):
            raise NotAStateDict(f"{path}: holds a {type(sd).__name__}, not a state_dict (a dict "
                                f"of parameter names to tensors)")
    out = {}
    for k, v in sd.items():
        if k.endswith(DROPPED_SUFFIXES):
            continue
        if not (hasattr(v, "detach") or isinstance(v, np.ndarray)):
            raise NotAStateDict(f"{state_dict_or_path}: entry {str(k)[:60]!r} is a "
                                f"{type(v).__name__}, not a tensor (not a state_dict)")
        a = _to_numpy(v)
        out[k] = a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a
    return out


def _torch_load(path):
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never
    pickled code. Raises NotAStateDict with one plain line for a file it refuses or cannot
    read (torch's own message for a pickled file is long and offers the unsafe option)."""
    import torch  # the converter is the only run-time user of torch
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise NotAStateDict(
            f"{path}: needs pickle to load (it holds Python objects, not only tensors), and "
            f"unpickling can run any code, so it is refused. Where you trust the file, save its "
            f"weights alone: torch.save(model.state_dict(), 'state_dict.pth'), with model the "
            f"module it holds, and convert that") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise NotAStateDict(f"{path}: not a file torch.load can read ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:100]})") from None


def mapping_table(model, state_dict):
    """Rows (torchvision key, our key, shape, note) for the lesson's weight-mapping table."""
    ours = model.state_dict()
    rows = []
    for k, v in state_dict.items():
        shape = tuple(np.shape(_to_numpy(v)))
        if k.endswith(DROPPED_SUFFIXES):
            rows.append((k, "-", shape, "dropped: BN step counter"))
        elif k in ours:
            rows.append((k, k, shape, "same name"))
        else:
            rows.append((k, "?", shape, "no counterpart"))
    return rows


def convert_file(src, dst):
    """``python -m mrcnn_np convert model.pth weights.npz``."""
    from .checkpoint import save_npz_atomic
    arrays = torchvision_to_numpy(src)
    save_npz_atomic(dst, arrays)
    return len(arrays)
