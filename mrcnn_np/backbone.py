"""The backbone: a ResNet body (C2..C5) and a feature pyramid (P2..P6), with backward (chapter 02).

Layout and parameter names are torchvision's, so that ``ResNetFPN().state_dict()`` has exactly the
keys of ``torchvision.models.detection.maskrcnn_resnet50_fpn().backbone.state_dict()``, and
``resnet101_fpn()`` those of ``resnet_fpn_backbone(backbone_name="resnet101", ...)``:

    body.conv1, body.bn1                       stem: 7x7 conv stride 2, norm, ReLU, 3x3 max-pool s2
    body.layer{1..4}.{j}.conv1/bn1/...         bottleneck blocks (v1.5: the stride is on the 3x3)
    body.layer{s}.0.downsample.{0,1}           1x1 conv + norm on the shortcut of block 0
    fpn.inner_blocks.{i}.0                     1x1 lateral convs (with bias), C_{i+2} -> F channels
    fpn.layer_blocks.{i}.0                     3x3 output convs (with bias), F -> F channels

BatchNorm: with ``norm="frozen"`` every norm layer is a ``FrozenBatchNorm2d`` (four buffers, the
keys of torchvision's FrozenBatchNorm2d exactly). With ``norm="batch"`` they are ``BatchNorm2d`` and
torchvision's state dict has one more key per norm layer, ``num_batches_tracked``: a step counter
that torch uses only when ``momentum=None``. We do not keep it; the key sets match up to it and the
weight converter drops it.
With ``norm="group"`` they are ``GroupNorm`` (``weight`` and ``bias`` only, torch.nn.GroupNorm's
keys), the choice for training from scratch with 1-2 images a batch (He, Girshick & Dollar 2019,
"Rethinking ImageNet Pre-training"); torchvision has no such backbone to import from.

Features (the FPN's outputs), finest first, with torchvision's names and strides:

    P2 "0" stride 4,  P3 "1" stride 8,  P4 "2" stride 16,  P5 "3" stride 32,  P6 "pool" stride 64

For an input [N, 3, H, W] the body gives C1 [N, w, H/2, W/2] (after conv1), then after the max-pool
C2 [N, 4w, H/4, W/4], C3 [N, 8w, H/8, W/8], C4 [N, 16w, H/16, W/16], C5 [N, 32w, H/32, W/32]
(w = ``width``, 64 for ResNet-50; each "/" rounds up: out = floor((in - 1) / 2) + 1 for the
stride-2 convs with "same" padding), and every P_k has ``fpn_channels`` channels and C_k's size;
P6 is P5 sampled every second pixel (torchvision's LastLevelMaxPool, a 1x1 max-pool of stride 2).

Freezing (``trainable_layers``, as torchvision): 5 trains everything, 3 (the default when starting
from ImageNet weights) trains layer2..layer4 and the FPN, 0 trains only the FPN. Frozen modules are
marked with ``requires_grad_(False)``: they keep their parameters in ``state_dict`` but leave
``named_parameters()``, so no optimiser sees them; backward stops below the lowest stage that
trains, so the frozen stages under it cost nothing (and the image never gets a gradient).
"""
from functools import partial

import numpy as np

from .nn import init
from .nn.layers import (add_backward, add_forward, max_pool2d_backward, max_pool2d_forward,
                        relu_backward, relu_forward)
from .nn.modules import (BatchNorm2d, Conv2d, FrozenBatchNorm2d, GroupNorm, Identity, Module,
                         Sequential)
from .nn.resample import upsample_nearest_backward, upsample_nearest_forward

EXPANSION = 4  # a bottleneck's output has 4x its inner width (ResNet paper, Table 1)
FEATURE_NAMES = ("0", "1", "2", "3", "pool")  # torchvision's names for P2, P3, P4, P5, P6
FEATURE_STRIDES = (4, 8, 16, 32, 64)  # pixels of the input per feature-map cell, P2..P6
STAGE_STRIDES = (1, 2, 2, 2)  # layer1 keeps the max-pool's size; layer2..4 halve it
# torchvision's freezing order: trainable_layers=k trains the first k names of this list
# (and bn1 too when k = 5), backbone_utils._resnet_fpn_extractor
TRAINABLE_ORDER = ("layer4", "layer3", "layer2", "layer1", "conv1")

# ResNet convs: He init, normal, fan_out (torchvision models/resnet.py, ResNet.__init__)
resnet_conv_init = partial(init.kaiming_normal, mode="fan_out", nonlinearity="relu")
# FPN convs: kaiming_uniform_(a=1) and zero bias (torchvision ops/feature_pyramid_network.py)
fpn_conv_init = partial(init.kaiming_uniform, a=1)


# GroupNorm: 32 groups, detectron2's GN (layers/batch_norm.py, get_norm) and Wu & He's default;
# but at least 4 channels in a group, since groups of 1-2 channels approach instance norm, which
# Wu & He (2018, Table 3) find clearly worse
GN_GROUPS = 32
GN_MIN_CHANNELS_PER_GROUP = 4


def group_norm_groups(channels):
    """The groups of ``norm="group"`` for ``channels`` = C: the largest divisor of C that is at
    most ``min(32, C // 4)`` (and at least 1). ResNet-50: 16 groups at 64 channels, 32 from 128
    on (detectron2 takes 32 at 64 channels too); the tiny preset: 16 -> 4, 32 -> 8, 64 -> 16."""
    top = max(1, min(GN_GROUPS, channels // GN_MIN_CHANNELS_PER_GROUP))
    return next(g for g in range(top, 0, -1) if channels % g == 0)


def make_norm(norm, channels):
    """``norm="frozen"``: FrozenBatchNorm2d (nothing trains); ``"batch"``: trainable BatchNorm2d;
    ``"group"``: trainable GroupNorm with ``group_norm_groups(channels)`` groups; ``"none"``: no
    normalization at all (the tiny preset: a 4-block network trains from scratch without one,
    and batch norm's running statistics from batches of 2 images hurt it at evaluation).

    The state_dict keys of the norm slots (``bn1``, ``downsample.1``) exist only for the three
    real norms; with ``"none"`` there is nothing to save."""
    if norm == "frozen":
        return FrozenBatchNorm2d(channels)
    if norm == "batch":
        return BatchNorm2d(channels)
    if norm == "group":
        return GroupNorm(group_norm_groups(channels), channels)
    if norm == "none":
        return Identity()
    raise ValueError(f"norm must be 'frozen', 'batch', 'group' or 'none', got {norm!r}")


def trains(module):
    """True when any parameter in ``module``'s tree is trainable (appears in named_parameters)."""
    return any(True for _ in module.named_parameters())


class Bottleneck(Module):
    """ResNet bottleneck, v1.5 layout (torchvision's): 1x1 -> 3x3 (stride here) -> 1x1, + shortcut.

        out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))
        shortcut = downsample(x) = bn(conv1x1 stride s)(x) when the shape changes, else x

    in_channels C, inner width ``planes``, output ``EXPANSION * planes`` channels.
    """

    def __init__(self, in_channels, planes, stride=1, norm="frozen", rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        out_channels = EXPANSION * planes
        conv = partial(Conv2d, bias=False, rng=rng, init_fn=resnet_conv_init)
        self.conv1 = conv(in_channels, planes, 1)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = conv(planes, planes, 3, stride=stride, padding=1)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = conv(planes, out_channels, 1)
        self.bn3 = make_norm(norm, out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(conv(in_channels, out_channels, 1, stride=stride),
                                         make_norm(norm, out_channels))
        self.stride = stride

    def forward(self, x):
        """x [N, C, H, W] -> (out [N, 4*planes, Ho, Wo], cache); Ho = (H - 1) // stride + 1."""
        c = {}
        out, c["conv1"] = self.conv1.forward(x)  # [N, planes, H, W]
        out, c["bn1"] = self.bn1.forward(out)
        out, c["relu1"] = relu_forward(out, self.keep_cache)
        out, c["conv2"] = self.conv2.forward(out)  # [N, planes, Ho, Wo]
        out, c["bn2"] = self.bn2.forward(out)
        out, c["relu2"] = relu_forward(out, self.keep_cache)
        out, c["conv3"] = self.conv3.forward(out)  # [N, 4*planes, Ho, Wo]
        out, c["bn3"] = self.bn3.forward(out)
        identity = x  # [N, C, H, W], here C = 4*planes and stride 1
        if self.downsample is not None:
            identity, c["downsample"] = self.downsample.forward(x)  # [N, 4*planes, Ho, Wo]
        out, c["add"] = add_forward(out, identity)  # [N, 4*planes, Ho, Wo]
        out, c["relu3"] = relu_forward(out, self.keep_cache)
        return out, c

    def backward(self, dout, cache, need_dx=True):
        """dout [N, 4*planes, Ho, Wo] -> dx [N, C, H, W] (None when ``need_dx`` is False).

        Accumulates the grads of the convs (and of the norms when they train). The two paths
        (main and shortcut) meet again at x, so their gradients add.
        """
        c = cache
        d = relu_backward(dout, c["relu3"])  # [N, 4*planes, Ho, Wo]
        d_main, d_id = add_backward(d, c["add"])
        d_main = self.bn3.backward(d_main, c["bn3"])
        d_main = self.conv3.backward(d_main, c["conv3"])  # [N, planes, Ho, Wo]
        d_main = relu_backward(d_main, c["relu2"])
        d_main = self.bn2.backward(d_main, c["bn2"])
        d_main = self.conv2.backward(d_main, c["conv2"])  # [N, planes, H, W]
        d_main = relu_backward(d_main, c["relu1"])
        d_main = self.bn1.backward(d_main, c["bn1"])
        d_main = self.conv1.backward(d_main, c["conv1"])  # [N, C, H, W]
        if self.downsample is not None:
            d_id = self.downsample.backward(d_id, c["downsample"])  # [N, C, H, W]
        if not need_dx:
            return None
        return d_main + d_id  # [N, C, H, W]


class ResNetBody(Module):
    """ResNet stem + four stages -> C2..C5 (torchvision's IntermediateLayerGetter of layer1..4).

    block_counts (3, 4, 6, 3) and width 64 are ResNet-50, (3, 4, 23, 3) ResNet-101 (ResNet paper,
    Table 1; ``RESNET_BLOCKS``). Stage s (1..4) has inner width ``width * 2**(s-1)`` and outputs
    ``EXPANSION * width * 2**(s-1)`` channels.
    """

    def __init__(self, block_counts=(3, 4, 6, 3), width=64, norm="frozen", rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        self.conv1 = Conv2d(3, width, 7, stride=2, padding=3, bias=False, rng=rng,
                            init_fn=resnet_conv_init)
        self.bn1 = make_norm(norm, width)
        in_channels = width
        self.out_channels = []  # channels of C2..C5
        for s, (count, stride) in enumerate(zip(block_counts, STAGE_STRIDES), start=1):
            planes = width * 2 ** (s - 1)
            blocks = [Bottleneck(in_channels if j == 0 else EXPANSION * planes, planes,
                                 stride if j == 0 else 1, norm, rng) for j in range(count)]
            setattr(self, f"layer{s}", Sequential(*blocks))
            in_channels = EXPANSION * planes
            self.out_channels.append(in_channels)

    def stage_trains(self):
        """[stem, layer1, ..., layer4] -> does the stage hold a trainable parameter? The stem is
        conv1 + bn1 (with the ReLU and max-pool, which have none)."""
        stem = trains(self.conv1) or trains(self.bn1)
        return [stem] + [trains(self.children[f"layer{s}"]) for s in (1, 2, 3, 4)]

    def forward(self, x):
        """x [N, 3, H, W] -> ([C2, C3, C4, C5], cache). Shapes in the module docstring."""
        cache = {}
        out, cache["conv1"] = self.conv1.forward(x)  # [N, w, H/2, W/2]
        out, cache["bn1"] = self.bn1.forward(out)
        out, cache["relu"] = relu_forward(out, self.keep_cache)  # C1
        out, cache["maxpool"] = max_pool2d_forward(out, 3, 2, 1, backend=self.conv1.backend)
        features = []
        for s in (1, 2, 3, 4):
            block_caches = []
            for block in self.children[f"layer{s}"]:
                out, c = block.forward(out)
                block_caches.append(c)
            cache[f"layer{s}"] = block_caches
            features.append(out)  # C_{s+1} [N, 4w*2**(s-1), H/2**(s+1), W/2**(s+1)]
        return features, cache

    def backward(self, dfeatures, cache):
        """dfeatures: [dC2, dC3, dC4, dC5] (None = no gradient) -> None; accumulates param grads.

        Where the gradient stops: a stage's output needs a gradient only if that stage or one
        below it trains. We walk down from layer4 and stop after the lowest training stage; its
        input gets no gradient (nothing below would use it), and the image never gets one (it is
        data, not a parameter). Frozen stages are never visited, so they cost nothing.
        """
        training = self.stage_trains()  # [stem, layer1, ..., layer4]
        lowest = next((s for s, t in enumerate(training) if t), None)
        if lowest is None:
            return None  # the whole body is frozen
        d = None  # gradient w.r.t. the output of the current stage
        for s in (4, 3, 2, 1):
            if s < lowest:
                return None
            dC = dfeatures[s - 1]
            if dC is not None:
                d = dC if d is None else d + dC  # C_{s+1} feeds both the FPN and layer{s+1}
            if d is None:
                continue  # no gradient has reached this stage yet (its own dC was None)
            blocks = list(self.children[f"layer{s}"])
            caches = cache[f"layer{s}"]
            for j in range(len(blocks) - 1, -1, -1):
                need_dx = j > 0 or s > lowest  # block 0 of the lowest stage: input needs none
                d = blocks[j].backward(d, caches[j], need_dx=need_dx)
        if d is None:
            return None
        # the stem trains (lowest == 0): back through max-pool, ReLU, bn1 to conv1's weight
        # ties in a max-pool window: the first maximum (row-major) takes the gradient, as torch's
        # CPU kernel; a tie of zeros from the ReLU below gets killed by relu_backward anyway
        d = max_pool2d_backward(d, cache["maxpool"])  # [N, w, H/2, W/2]
        d = relu_backward(d, cache["relu"])
        d = self.bn1.backward(d, cache["bn1"])
        self.conv1.backward(d, cache["conv1"], need_dx=False)  # the image gets no gradient
        return None


class FPN(Module):
    """Feature pyramid (torchvision's FeaturePyramidNetwork + LastLevelMaxPool).

        inner_i = lateral_i(C_i)                       1x1 conv with bias, C_i channels -> F
        top     = inner_top                            the coarsest level starts the top-down path
        top     = inner_i + upsample_nearest(top, size of inner_i)   for i from coarse to fine
        P_i     = output_i(top)                        3x3 conv with bias, padding 1, F -> F
        P6      = P5[:, :, ::2, ::2]                   max_pool2d(P5, kernel 1, stride 2, padding 0)

    Upsampling goes *to the lateral's size*, not by a fixed factor 2, so odd input sizes work
    (e.g. C4 of 5x7 under C5 of 3x4: torch's nearest rule src = floor(dst * in / out)).
    """

    def __init__(self, in_channels_list, out_channels=256, rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        conv = partial(Conv2d, bias=True, rng=rng, init_fn=fpn_conv_init)
        self.inner_blocks = Sequential(*[Sequential(conv(c, out_channels, 1))
                                         for c in in_channels_list])
        self.layer_blocks = Sequential(*[Sequential(conv(out_channels, out_channels, 3, padding=1))
                                         for _ in in_channels_list])
        self.out_channels = out_channels

    def forward(self, features):
        """features [C2, C3, C4, C5] (C_i [N, C_i, H_i, W_i]) -> ([P2, P3, P4, P5, P6], cache);
        P_i [N, F, H_i, W_i], P6 [N, F, ceil(H_5 / 2), ceil(W_5 / 2)]."""
        L = len(features)
        c = {"inner": [None] * L, "layer": [None] * L, "up": [None] * L, "add": [None] * L}
        results = [None] * L
        last, c["inner"][L - 1] = self.inner_blocks[L - 1].forward(features[L - 1])  # [N,F,H5,W5]
        results[L - 1], c["layer"][L - 1] = self.layer_blocks[L - 1].forward(last)
        for i in range(L - 2, -1, -1):
            lateral, c["inner"][i] = self.inner_blocks[i].forward(features[i])  # [N, F, Hi, Wi]
            top_down, c["up"][i] = upsample_nearest_forward(last, lateral.shape[-2:])  # [N,F,Hi,Wi]
            last, c["add"][i] = add_forward(lateral, top_down)
            results[i], c["layer"][i] = self.layer_blocks[i].forward(last)  # [N, F, Hi, Wi]
        # P6 [N, F, ceil(H5/2), ceil(W5/2)]: a 1x1 window, so no ties and no padding
        p6, c["pool"] = max_pool2d_forward(results[L - 1], 1, 2, 0,
                                         backend=self.layer_blocks[L - 1][0].backend)
        return results + [p6], c

    def backward(self, dresults, cache, need_dfeatures=None):
        """dresults [dP2, ..., dP6] (None = no gradient) -> [dC2, ..., dC5].

        ``need_dfeatures[i]`` False: C_i gets no gradient (returned as None) because nothing below
        it trains. The lateral conv's weight grad is still accumulated. A level whose gradient is
        None and that receives nothing from a finer level leaves its convs' grads untouched.
        """
        L = len(cache["inner"])
        need = need_dfeatures if need_dfeatures is not None else [True] * L
        dP = list(dresults[:L])  # [dP2 .. dP5]
        if dresults[L] is not None:  # P6 was sampled from P5
            d6 = max_pool2d_backward(dresults[L], cache["pool"])  # [N, F, H5, W5]
            dP[L - 1] = d6 if dP[L - 1] is None else dP[L - 1] + d6
        dfeatures = [None] * L
        d_from_finer = None  # gradient w.r.t. `last` of level i, sent up by level i-1's upsample
        for i in range(L):  # fine to coarse: the reverse of the top-down path
            d = None  # gradient w.r.t. `last` at level i
            if dP[i] is not None:
                d = self.layer_blocks[i].backward(dP[i], cache["layer"][i])  # [N, F, Hi, Wi]
            if d_from_finer is not None:
                d = d_from_finer if d is None else d + d_from_finer
            d_from_finer = None
            if d is None:
                continue
            if i < L - 1:  # last_i = lateral_i + upsample(last_{i+1})
                d_lateral, d_top = add_backward(d, cache["add"][i])
                # [N, F, H_{i+1}, W_{i+1}]: each coarse cell sums the fine cells it was copied to
                d_from_finer = upsample_nearest_backward(d_top, cache["up"][i])
            else:
                d_lateral = d
            dC = self.inner_blocks[i].backward(d_lateral, cache["inner"][i])  # [N, C_i, Hi, Wi]
            dfeatures[i] = dC if need[i] else None
        return dfeatures


class ResNetFPN(Module):
    """ResNet body + FPN; children ``body`` and ``fpn`` as torchvision's BackboneWithFPN.

    Arguments
        block_counts     bottlenecks per stage; (3, 4, 6, 3) is ResNet-50, (3, 4, 23, 3)
                         ResNet-101
        width            stem channels and layer1's inner width; 64 is ResNet-50
        fpn_channels     F, the channels of every P level (torchvision: 256)
        norm             "frozen" (FrozenBatchNorm2d, torchvision's default with pretrained
                         weights), "batch" (BatchNorm2d: batch statistics in training mode)
                         or "group" (GroupNorm, per image, the same in training and eval;
                         groups: see ``group_norm_groups``)
        trainable_layers 0..5, as torchvision (see the module docstring)
        rng              numpy Generator for the initial weights
        dtype            float32 (default) or float64 (gradient checks)
    """

    def __init__(self, block_counts=(3, 4, 6, 3), width=64, fpn_channels=256, norm="frozen",
                 trainable_layers=3, rng=None, dtype=np.float32):
        super().__init__()
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
        rng = rng if rng is not None else np.random.default_rng(0)
        self.body = ResNetBody(block_counts, width, norm, rng)
        self.fpn = FPN(self.body.out_channels, fpn_channels, rng)
        self.out_channels = fpn_channels
        self.freeze(trainable_layers)
        if np.dtype(dtype) != np.float32:
            self.astype(dtype)

    def freeze(self, trainable_layers):
        """Train the last ``trainable_layers`` of (conv1, layer1, layer2, layer3, layer4), and bn1
        with 5, as torchvision's ``_resnet_fpn_extractor``; freeze the rest. The FPN always
        trains."""
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
        to_train = list(TRAINABLE_ORDER[:trainable_layers])
        if trainable_layers == 5:
            to_train.append("bn1")
        for name, child in self.body.children.items():
            child.requires_grad_(name in to_train)
        self.trainable_layers = trainable_layers
        return self

    def forward(self, x):
        """x [N, 3, H, W] -> (features, cache); features = [P2, P3, P4, P5, P6] (torchvision's
        "0", "1", "2", "3", "pool"), each [N, F, ~H/s, ~W/s] for s = 4, 8, 16, 32, 64."""
        cs, body_cache = self.body.forward(x)  # [C2, C3, C4, C5]
        ps, fpn_cache = self.fpn.forward(cs)  # [P2, P3, P4, P5, P6]
        return ps, {"body": body_cache, "fpn": fpn_cache}

    def backward(self, dfeatures, cache):
        """dfeatures: 5 arrays shaped as the features, or None for a level with no gradient.
        Accumulates parameter grads; returns None (no gradient for the image, see ResNetBody)."""
        training = self.body.stage_trains()  # [stem, layer1, ..., layer4]
        # C_{s+1} (layer s's output) needs a gradient iff layer s or a stage below it trains
        need = [any(training[:s + 1]) for s in (1, 2, 3, 4)]
        dcs = self.fpn.backward(dfeatures, cache["fpn"], need)
        self.body.backward(dcs, cache["body"])
        return None


def multiply_adds(model, height, width):
    """Multiply-adds of the convolutions in one forward pass of one [3, height, width] image,
    by part: {"stem", "layer1", ..., "layer4", "fpn"} (norms, ReLUs, pools and adds are a few
    operations per value, left out). A convolution costs F * C * kh * kw per output pixel; its
    backward costs about twice that (one product for dx, one for dw).

    Shape arithmetic only, no forward pass: ResNet-50-FPN at 1024 x 1024 is counted instantly.
    """
    def conv(c, h, w):  # one Conv2d on an [h, w] map -> (multiply-adds, ho, wo)
        F, C, kh, kw = c.params["weight"].shape  # [F, C, kh, kw]
        ho = (h + 2 * c.padding - kh) // c.stride + 1
        wo = (w + 2 * c.padding - kw) // c.stride + 1
        return F * C * kh * kw * ho * wo, ho, wo

    body, out = model.body, {}
    out["stem"], h, w = conv(body.conv1, height, width)  # [w, H/2, W/2]
    h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # max-pool 3x3, stride 2, padding 1
    sizes = []  # (h, w) of C2..C5
    for s in (1, 2, 3, 4):
        total = 0
        for blk in body.children[f"layer{s}"]:
            m1, h1, w1 = conv(blk.conv1, h, w)
            m2, h2, w2 = conv(blk.conv2, h1, w1)  # the stride is here
            m3, h3, w3 = conv(blk.conv3, h2, w2)
            md = conv(blk.downsample[0], h, w)[0] if blk.downsample is not None else 0
            total += m1 + m2 + m3 + md
            h, w = h3, w3
        out[f"layer{s}"] = total
        sizes.append((h, w))
    fpn = model.fpn
    out["fpn"] = sum(conv(fpn.inner_blocks[i][0], *hw)[0] + conv(fpn.layer_blocks[i][0], *hw)[0]
                     for i, hw in enumerate(sizes))
    return out


# Bottlenecks per stage (layer1..layer4) of the ResNets that torchvision's resnet_fpn_backbone
# names; ResNet paper, Table 1. The two differ only in layer3: 6 blocks or 23.
RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


def resnet_fpn(name, rng=None, norm="frozen", trainable_layers=3, fpn_channels=256,
               dtype=np.float32):
    """ResNet-``name``-FPN, ``name`` a key of ``RESNET_BLOCKS`` ("resnet50" | "resnet101"), as
    torchvision's ``resnet_fpn_backbone(backbone_name=name, ...)``: width 64, the same layout and
    parameter names, only the block counts differ."""
    if name not in RESNET_BLOCKS:
        raise ValueError(f"unknown ResNet {name!r}; choose one of "
                         f"{', '.join(repr(n) for n in RESNET_BLOCKS)}")
    return ResNetFPN(RESNET_BLOCKS[name], 64, fpn_channels, norm, trainable_layers, rng, dtype)


def resnet50_fpn(rng=None, norm="frozen", trainable_layers=3, fpn_channels=256, dtype=np.float32):
    """ResNet-50-FPN as torchvision's maskrcnn_resnet50_fpn backbone: 26.85M parameters
    (23.51M in the body, ResNet-50 without its classifier; 3.34M in the FPN)."""
    return resnet_fpn("resnet50", rng, norm, trainable_layers, fpn_channels, dtype)


def resnet101_fpn(rng=None, norm="frozen", trainable_layers=3, fpn_channels=256,
                  dtype=np.float32):
    """ResNet-101-FPN as torchvision's ``resnet_fpn_backbone(backbone_name="resnet101")``, and
    matterport's default backbone: 45.84M parameters (42.50M in the body, ResNet-101 without
    its classifier; the same 3.34M FPN, since C2..C5 have the same channels as ResNet-50's)."""
    return resnet_fpn("resnet101", rng, norm, trainable_layers, fpn_channels, dtype)


# The tiny preset, for training from scratch on a CPU at 128-256 px (chapter 02 measures it):
# one bottleneck per stage, width 16 (C2..C5 = 64, 128, 256, 512 channels), 64 FPN channels,
# no normalization, everything trains. Measured on the shapes data set (1,500 iterations, batch 2,
# 128 px): mask AP50 0.37 with trainable BatchNorm (its running statistics, gathered from batches
# of 2 images, disagree with the batch statistics it trained with: evaluating with batch
# statistics gave 0.57), 0.63 with GroupNorm, 0.71 with no normalization.
TINY = dict(block_counts=(1, 1, 1, 1), width=16, fpn_channels=64, norm="none", trainable_layers=5)


def resnet_fpn_tiny(rng=None, dtype=np.float32, **overrides):
    """The tiny backbone (``TINY``; any of its fields can be overridden, e.g. ``norm="frozen"``):
    the same code and parameter names as ResNet-50-FPN, fewer and thinner blocks."""
    unknown = set(overrides) - set(TINY)
    if unknown:
        raise TypeError(f"unknown argument(s) {sorted(unknown)}; choose from {sorted(TINY)}")
    return ResNetFPN(**{**TINY, **overrides}, rng=rng, dtype=dtype)
