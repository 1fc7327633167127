"""Unknown layer types: what the user probably meant, by meaning as well as by spelling.

`dense`, `fc`, `BatchNorm2d` or `upsampling` are the names other frameworks give specc's
layer types. The alias table maps such names to specc's; a suggestion is made only for a
type the op table has when asked (other layer types may be added at any time), and never
for a name that is itself a layer type.
"""

from __future__ import annotations

from specc.errors import did_you_mean
from specc.ops import OPS

# Other frameworks' names (squashed: lower case, no `_`, `-` or spaces) -> specc's type.
ALIASES: dict[str, str] = {
    "dense": "linear",
    "fc": "linear",
    "fullyconnected": "linear",
    "innerproduct": "linear",
    "gemm": "linear",
    "bn": "batch_norm",
    "batchnorm": "batch_norm",
    "batchnorm2d": "batch_norm",
    "batchnormalization": "batch_norm",
    "maxpool": "max_pool",
    "maxpool2d": "max_pool",
    "maxpooling2d": "max_pool",
    "avgpool": "avg_pool",
    "avgpool2d": "avg_pool",
    "averagepool": "avg_pool",
    "averagepooling2d": "avg_pool",
    "gap": "global_avg_pool",
    "globalavgpool": "global_avg_pool",
    "globalaveragepool": "global_avg_pool",
    "globalaveragepooling2d": "global_avg_pool",
    "adaptiveavgpool2d": "global_avg_pool",
    "gmp": "global_max_pool",
    "globalmaxpool": "global_max_pool",
    "globalmaxpooling2d": "global_max_pool",
    "conv2d": "conv",
    "convolution": "conv",
    "convolution2d": "conv",
    "deconv": "conv_transpose",
    "deconvolution": "conv_transpose",
    "convtranspose": "conv_transpose",
    "convtranspose2d": "conv_transpose",
    "conv2dtranspose": "conv_transpose",
    "transposedconv": "conv_transpose",
    "swish": "silu",
    "hardswish": "hard_swish",
    "hswish": "hard_swish",
    "hardsigmoid": "hard_sigmoid",
    "hsigmoid": "hard_sigmoid",
    "logistic": "sigmoid",
    "clip": "hardtanh",
    "clamp": "hardtanh",
    "noop": "identity",
    "passthrough": "identity",
    "leakyrelu": "leaky_relu",
    "lrelu": "leaky_relu",
    "lrn": "local_response_norm",
    "localresponsenorm": "local_response_norm",
    "localresponsenormalization": "local_response_norm",
    "upsampling": "upsample",
    "upsampling2d": "upsample",
    "interpolate": "upsample",
    "resize": "upsample",
    "softmax2d": "softmax",
    "logsoftmax": "log_softmax",
    "dropout2d": "dropout",
    "spatialdropout2d": "dropout",
    "drop": "dropout",
    "layernorm": "layer_norm",
    "layernormalization": "layer_norm",
    "groupnorm": "group_norm",
    "groupnormalization": "group_norm",
    "instancenorm": "instance_norm",
    "instancenorm2d": "instance_norm",
    "instancenormalization": "instance_norm",
    "zeropad": "pad",
    "zeropadding2d": "pad",
    "zeropad2d": "pad",
    "concatenate": "concat",
    "cat": "concat",
    "sum": "add",
    "residual": "add",
    "multiply": "mul",
    "pixelshuffle": "pixel_shuffle",
    "depthtospace": "pixel_shuffle",
    "channelshuffle": "channel_shuffle",
}


def _squash(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def suggest_type(name: object) -> str | None:
    """The layer type `name` most likely means, or None: a type spelled differently
    (`MaxPool`, `max-pool`), another framework's name (`dense`), then the nearest spelling."""
    if not isinstance(name, str) or name in OPS:
        return None
    squashed = _squash(name)
    for kind in OPS:
        if _squash(kind) == squashed:
            return kind
    meant = ALIASES.get(squashed)
    for kind in OPS if meant else ():  # `hard_swish` finds `hardswish` too
        if _squash(kind) == _squash(meant or ""):
            return kind
    close = did_you_mean(name, OPS)
    return close.split("'")[1] if close else None


def unknown_type_message(name: object) -> str:
    """`unknown layer type 'dense' — did you mean 'linear'? (layer types: add, avg_pool, ...)`"""
    meant = suggest_type(name)
    hint = f" — did you mean '{meant}'?" if meant else ""
    return f"unknown layer type '{name}'{hint} (layer types: {', '.join(sorted(OPS))})"
