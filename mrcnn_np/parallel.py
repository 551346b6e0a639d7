"""Data-parallel training: the images of a batch on several cores, one process per worker.

A tiny training step is many small operations, and most of them (copies, adds, small matrix
products) use one core however many BLAS or numba threads they are given. The images of a
batch, though, are independent up to the point where their losses are averaged. So each
worker process takes its share of the images and runs the whole model on them, and the
gradients are summed:

    master                                  worker w (its images B_w of the batch)
    transform the batch (one rng)
                          -- batch[B_w] -->  backbone + RPN head + proposal layer
                          <-- proposals ---
    sample_targets for the whole batch
      (the same rng draws, in the same
       order, as MaskRCNN.forward_train;
       the anchors' draws even before the
       proposals come back)
                          -- samples[B_w],   the five losses of B_w, backward with each
                             loss weights -> loss weighted by B_w's share (below)
    grad = sum over workers                 <-- losses ----  (its grads in shared memory)
    clip, optimiser step (the parameters
      are shared memory: every worker sees the new weights)

The losses are averages over the whole batch (chapter 09): the objectness loss over the
sampled anchors of all images, the box losses over all sampled RoIs, the mask loss over all
positive RoIs. A worker's loss is the same average over its own images only, so worker w's
loss ``k`` enters the batch's loss with weight ``n_k(B_w) / n_k(batch)`` (its share of the
anchors, RoIs or positives), and the gradient with the same weight: ``backward_train`` takes
those weights in place of its 1s. Everything the losses are measured against is drawn by the
master with the single training rng, exactly as ``forward_train`` draws it, so the parallel
path samples the same anchors and RoIs as the reference.

What is not the same: the sum of a product over two images' pixels is added in another order
when each image is its own product, and ``grad = g_0 + g_1`` adds the halves in one more step.
Results agree to rounding, not bit for bit; ``tests/test_parallel_equivalence.py`` trains 20
float64 iterations both ways and compares every loss to 1e-6 relative.

Not for BatchNorm in training mode: its statistics are taken over the whole batch, which no
worker sees (the ``tiny`` preset has no normalization; frozen and group norm are per image).

Workers are started with ``spawn`` (a fresh interpreter: numba's and OpenBLAS's thread pools
are not safe to fork once started) and get the model pickled; the parameters then live in one
shared-memory block that master and workers map. Each worker runs one numba thread and one
BLAS thread, so W workers use W cores. ``close()`` (or ``with DataParallel(...)``) stops them.
"""
import multiprocessing as mp
import os
from multiprocessing import shared_memory

import numpy as np

from .model import loss_names


# glibc's malloc settings for the workers (environment variables glibc reads when a process
# starts; other C libraries ignore them). A training step allocates and frees the same few-MB
# temporaries every time (im2col matrices, activations, their gradients). By default glibc
# hands the freed top of its heap back to the system and maps arrays over its threshold
# afresh, so the step pays the page faults of touching that memory again, every step. Keeping
# up to 256 MiB of freed heap, growing it 64 MiB at a time, and serving arrays up to 32 MiB
# from it: a worker's image step 94.6 -> 91.8 ms, its page faults 120,000 -> 38,000 per
# 45 steps (2026-12-02, one thread, medians of two processes each). Memory, not arithmetic:
# the numbers are the same.
WORKER_MALLOC = dict(MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(256 << 20),
                     MALLOC_TOP_PAD_=str(64 << 20))
# glibc's mallopt parameter for each variable (malloc.h: M_TRIM_THRESHOLD -1, M_TOP_PAD -2,
# M_MMAP_THRESHOLD -3): the same settings for a process that is already running
_MALLOPT_PARAM = dict(MALLOC_TRIM_THRESHOLD_=-1, MALLOC_TOP_PAD_=-2, MALLOC_MMAP_THRESHOLD_=-3)


def keep_freed_memory():
    """Give this process the workers' malloc settings (``WORKER_MALLOC``) through glibc's
    ``mallopt``, for the one-process training path: ``train(workers=1)`` calls it.

    A variable the user has set in the environment is left alone (glibc read it at start-up).
    Nothing happens on a C library without ``mallopt`` (macOS, musl). Returns {variable:
    value} of what was applied. Measured (2026-12-03, one thread, the tiny step on the demo's
    weights, 4 interleaved processes each): 220-225 -> 209-214 ms, page faults 290,000-400,000
    -> 42,000 per 40 steps. It changes where arrays live, not a number computed in them.
    """
    import ctypes
    import ctypes.util
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or no mallopt in it
        return {}
    applied = {}
    for var, value in WORKER_MALLOC.items():
        if var in os.environ:
            continue
        if mallopt(_MALLOPT_PARAM[var], int(value)) == 1:  # 1: accepted
            applied[var] = value
    return applied


def _trainable(model):
    """(module, key) for every trainable parameter, in ``named_parameters`` order."""
    return [(m, k) for _, m in model.named_modules() if m.requires_grad for k in m.params]


def _bind(model, flat, slot):
    """Make the parameters views into ``flat[0]`` and the grads views into ``flat[slot]``."""
    off = 0
    for m, k in _trainable(model):
        p = m.params[k]
        n = p.size
        if slot is None:  # the master: copy the values in first
            flat[0, off:off + n] = p.reshape(-1)
        m.params[k] = flat[0, off:off + n].reshape(p.shape)
        if slot is not None:
            m.grads[k] = flat[slot, off:off + n].reshape(p.shape)
        off += n


def _attach(name, shape, dtype):
    shm = shared_memory.SharedMemory(name=name)
    return shm, np.ndarray(shape, dtype, buffer=shm.buf)


def _worker_main(conn, model, shm_name, shape, dtype, slot):
    """A worker's loop: ("features", batch, sizes) -> proposals; ("losses", samples, sizes,
    weights) -> its weighted losses, its gradient left in its slot of shared memory."""
    import signal

    import numba
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the master's: it stops the workers
    numba.set_num_threads(1)
    shm, flat = _attach(shm_name, shape, dtype)
    _bind(model, flat, slot)
    model.train(True)
    features = None
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            try:
                if msg[0] == "features":
                    _, batch, image_sizes = msg
                    model.zero_grad()
                    features = model.features_forward(batch)
                    proposals = model.propose(features, image_sizes, training=True)
                    conn.send(("ok", (proposals, features.anchors)))
                elif msg[0] == "losses":
                    _, samples, image_sizes, weights = msg
                    losses, cache = model.loss_forward(features, samples, image_sizes)
                    features = None
                    model.backward_train(cache, loss_weights=weights)
                    conn.send(("ok", losses))
            except Exception:  # noqa: BLE001 -- the master raises it, with this traceback
                import traceback
                conn.send(("error", traceback.format_exc()))
    finally:
        del flat
        shm.close()


class WorkerError(RuntimeError):
    """A worker's step raised; the message holds the worker's traceback."""


def _recv(conn):
    """A worker's reply, or WorkerError with its traceback (also when it died)."""
    try:
        status, value = conn.recv()
    except EOFError:
        raise WorkerError("a DataParallel worker exited during a step") from None
    if status == "error":
        raise WorkerError(f"a DataParallel worker failed:\n{value}")
    return value


def _keypoint_rows(samples, images):
    """The rows of ``samples.keypoint_heatmaps`` / ``keypoint_valid`` (one per RoI and
    keypoint, stacked over the images' keypoint RoIs) that belong to ``images``."""
    K = len(samples.keypoint_valid) // max(sum(len(r) for r in samples.keypoint_rois), 1)
    starts = np.cumsum([0] + [len(r) * K for r in samples.keypoint_rois])
    return np.concatenate([np.arange(starts[i], starts[i + 1]) for i in images]).astype(np.int64)


def _counts(samples, images, names):
    """Normalizer of each loss over ``images`` (indices into the batch): sampled anchors (the
    two RPN losses), sampled RoIs (classifier, box), positive RoIs (mask), valid (RoI,
    keypoint) pairs (keypoint)."""
    anchors = max(int((samples.rpn_labels[images] >= 0).sum()), 1)
    rois = sum(len(samples.labels[i]) for i in images)
    n = dict(loss_objectness=anchors, loss_rpn_box_reg=anchors, loss_classifier=rois,
             loss_box_reg=rois)
    if "loss_mask" in names:
        n["loss_mask"] = sum(len(samples.pos_rois[i]) for i in images)
    if "loss_keypoint" in names:
        n["loss_keypoint"] = int(samples.keypoint_valid[_keypoint_rows(samples, images)].sum())
    return n


def _subset(samples, images):
    """The ``Samples`` of the batch's ``images`` (mask targets and keypoint rows are stacked
    over images)."""
    masks = None
    if samples.mask_targets is not None:
        starts = np.cumsum([0] + [len(p) for p in samples.pos_rois])
        masks = np.concatenate([samples.mask_targets[starts[i]:starts[i + 1]] for i in images], 0)
    kp = {}
    if samples.keypoint_rois is not None:
        rows = _keypoint_rows(samples, images)
        kp = dict(keypoint_rois=[samples.keypoint_rois[i] for i in images],
                  keypoint_heatmaps=samples.keypoint_heatmaps[rows],
                  keypoint_valid=samples.keypoint_valid[rows])
    return samples._replace(
        rpn_labels=samples.rpn_labels[images], rpn_targets=samples.rpn_targets[images],
        rois=[samples.rois[i] for i in images], labels=[samples.labels[i] for i in images],
        reg_targets=[samples.reg_targets[i] for i in images],
        pos_rois=[samples.pos_rois[i] for i in images], mask_targets=masks,
        mask_labels=[samples.mask_labels[i] for i in images], **kp)


class DataParallel:
    """``DataParallel(model, workers)``; ``forward_backward(images, targets, rng)`` as
    ``MaskRCNN.forward_backward`` (the summed gradient in the model's ``.grads``); ``close()``.

    From here on the model's parameters are views into shared memory: update them in place
    (the optimisers do), do not ``load_state_dict`` or ``astype`` the model until ``close()``.
    """

    def __init__(self, model, workers=2):
        if workers < 2:
            raise ValueError("DataParallel needs at least 2 workers")
        if model.cfg.backbone_norm == "batch":
            raise ValueError("DataParallel cannot train BatchNorm: its statistics span the batch")
        self.model, self.workers = model, workers
        self._next = None  # (images, their transform): the next batch, prepared early
        self._anchors = {}  # (padded size, dtype) -> the anchors [A, 4] the workers returned
        params = [m.params[k] for m, k in _trainable(model)]
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise ValueError(f"parameters of several dtypes {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        total = sum(p.size for p in params)
        shape = (1 + workers, total)  # row 0: the parameters; row 1 + w: worker w's gradient
        self._shm = shared_memory.SharedMemory(create=True,
                                               size=int(np.prod(shape)) * dtype.itemsize)
        self._flat = np.ndarray(shape, dtype, buffer=self._shm.buf)
        _bind(model, self._flat, None)
        # the master's gradients: views into one private flat array, so that summing the
        # workers' rows into them is one operation, not one copy per parameter
        self._grad = np.zeros(total, dtype)
        off = 0
        for m, k in _trainable(model):
            n = m.params[k].size
            self._grad[off:off + n] = m.grads[k].reshape(-1)  # what they held, kept
            m.grads[k] = self._grad[off:off + n].reshape(m.params[k].shape)
            off += n
        ctx = mp.get_context("spawn")
        worker_env = dict(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",  # a user's own
                          **{k: os.environ.get(k, v) for k, v in WORKER_MALLOC.items()})  # kept
        env = {v: os.environ.get(v) for v in worker_env}
        os.environ.update(worker_env)  # what each worker starts with (spawn copies os.environ)
        self._conns, self._procs = [], []
        try:
            for w in range(workers):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker_main, daemon=True,
                                args=(child, model, self._shm.name, shape, dtype, 1 + w))
                p.start()
                self._conns.append(parent)
                self._procs.append(p)
        except BaseException:  # e.g. a model that cannot be pickled: leave nothing behind
            self.close()
            raise
        finally:
            for v, old in env.items():
                if old is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = old

    def forward_backward(self, images, targets, rng, zero_grad=True, draw_next=None):
        """``draw_next``: a function that draws the next batch (images, targets) from ``rng``;
        it is called, and that batch transformed, while the workers run this batch's losses
        and backward, so that the next call with those images starts at the workers."""
        model = self.model
        model.train(True)
        if self._next is not None and self._next[0] is images:  # transformed during the last
            batch, image_sizes, targets = self._next[1]
        else:
            batch, image_sizes, targets = model.transform(images, targets, training=True, rng=rng)
        self._next = None
        parts = [p for p in np.array_split(np.arange(len(batch)), self.workers) if len(p)]
        for conn, part in zip(self._conns, parts):
            conn.send(("features", batch[part], [image_sizes[i] for i in part]))
        # The anchors depend only on the padded batch's size: once seen, the RPN's targets
        # (the first draws of sample_targets) are drawn while the workers run the backbone
        key = (batch.shape[-2:], batch.dtype)
        anchors = self._anchors.get(key)
        anchor_samples = None if anchors is None else model.anchor_targets(anchors, targets, rng)
        replies = [_recv(conn) for conn in self._conns[:len(parts)]]
        proposals = [p for props, _ in replies for p in props]  # N arrays [P_i, 4]
        if anchors is None:
            anchors = self._anchors[key] = replies[0][1]
        samples = model.sample_targets(anchors, proposals, targets, rng,  # forward_train's
                                       anchor_samples=anchor_samples)    # draws, in order
        names = loss_names(model.cfg)
        total = _counts(samples, range(len(batch)), names)
        shares = []  # per worker: loss k -> its share of the batch's normalizer of loss k
        for conn, part in zip(self._conns, parts):
            own = _counts(samples, part, names)
            shares.append({k: (own[k] / total[k] if total[k] else 0.0) for k in names})
            conn.send(("losses", _subset(samples, part), image_sizes, shares[-1]))
        if draw_next is not None:  # the rng draws of the next step, in their usual order
            next_images, next_targets = draw_next()
            self._next = (next_images, model.transform(next_images, next_targets, training=True,
                                                       rng=rng))
        # the batch's loss k = sum over workers of (share of the normalizer) x (worker's loss k)
        losses = {k: 0.0 for k in names}
        for conn, share in zip(self._conns, shares):
            part_losses = _recv(conn)
            for k in names:
                if share[k]:  # a worker without any of loss k's samples adds nothing to it
                    losses[k] += share[k] * part_losses[k]
        rows = self._flat[1:1 + len(parts)]  # [workers used, total]: their gradients
        if zero_grad:
            np.sum(rows, axis=0, out=self._grad)  # the model's .grads are views into it
        else:
            self._grad += rows.sum(axis=0)
        losses["loss"] = sum(losses[k] for k in names)
        return losses

    def close(self):
        """Stop the workers and free the shared memory; the model keeps a private copy of
        its parameters (it can then be loaded, converted and trained as before)."""
        if self._shm is None:
            return
        for conn in self._conns:
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        for m, k in _trainable(self.model):
            m.params[k] = m.params[k].copy()
            m.grads[k] = m.grads[k].copy()
        self._flat = None
        self._shm.close()
        self._shm.unlink()
        self._shm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
