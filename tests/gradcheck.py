"""The tests' gradient-check helpers: the library's own (``mrcnn_np.nn.gradcheck``)."""
from mrcnn_np.nn.gradcheck import numerical_grad, rel_error  # noqa: F401
