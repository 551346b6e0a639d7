"""Fast paths for mrcnn-np's hot ops.

``kernels/*_numba.py`` hold ``@numba.njit`` CPU kernels and ``kernels/*_cuda.py`` hold
``numba.cuda`` kernels. Each kernel keeps the variable names of the NumPy reference in
``mrcnn_np/ops`` (``roi_start_h``, ``bin_size_h``, ``roi_bin_grid_h``, ...), and the top of
each file says what each version bought. The NumPy reference is the definition; tests check
that every kernel agrees with it.
"""
