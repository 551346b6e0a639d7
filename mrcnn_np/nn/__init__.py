"""mrcnn_np.nn: layers with hand-written backward (chapter 01).

Ops are pairs of plain functions ``x_forward(...) -> (out, cache)`` and
``x_backward(dout, cache) -> grads``; the layer objects of ``modules.py`` hold parameters and
call them; ``optim.py`` trains the parameters.
"""
from . import init
from .conv import (col2im, conv2d, conv2d_backward, conv2d_forward, conv_transpose2d,
                   conv_transpose2d_backward, conv_transpose2d_forward, im2col)
from .layers import (add_backward, add_forward, batchnorm2d_backward, batchnorm2d_forward,
                     flatten_backward, flatten_forward, frozen_batchnorm2d_backward,
                     frozen_batchnorm2d_forward, groupnorm_backward,
                     groupnorm_forward, linear, linear_backward, linear_forward, max_pool2d,
                     max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward,
                     sigmoid, sigmoid_backward, sigmoid_forward)
from .losses import (bce_with_logits_backward, bce_with_logits_forward, cross_entropy_backward,
                     cross_entropy_forward, l1_backward, l1_forward, smooth_l1_backward,
                     smooth_l1_forward)
from .modules import (BatchNorm2d, Conv2d, ConvTranspose2d, FrozenBatchNorm2d, GroupNorm, Linear,
                      Module, ReLU, Sequential)
from .optim import SGD, AdamW, warmup_multistep_lr
from .bicubic import interpolate_bicubic
from .resample import (interpolate_bilinear, interpolate_nearest, upsample_bilinear_backward,
                       upsample_bilinear_forward, upsample_nearest_backward,
                       upsample_nearest_forward)
