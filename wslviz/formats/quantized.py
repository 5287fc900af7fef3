"""State dicts of ``torch.ao`` quantized networks read as float weights.

``quantize_dynamic`` and ``convert`` save a linear layer as ``fc._packed_params._packed_params`` (a tuple of the
int8 weight and the float bias) beside ``fc._packed_params.dtype``, a conv layer as an int8 ``conv.weight``,
and every quantized module (and each ``QuantStub``) with its output ``scale`` and ``zero_point``. Read naively,
the tuples are not tensors and only the scales remain: a network of two numbers. Here each quantized weight is
dequantized (its int8 values times its scales: what the quantized network computes with), the packed pair is
named ``fc.weight`` / ``fc.bias`` as the float network named it, and the quantization parameters, which are not
weights, are set aside.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

PACKED = "_packed_params._packed_params"
QUANT_PARAMS = ("scale", "zero_point")


def _is_quantized(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.is_quantized


def dequantized(state: Mapping) -> tuple[Mapping, str | None]:
    """``state`` with quantized layers as float32 weights (see the module docstring) and a note naming them;
    ``state`` itself and None when it holds nothing quantized."""
    packed = {k for k, v in state.items() if isinstance(k, str) and k.endswith(PACKED) and isinstance(v, tuple | list)}
    if not packed and not any(_is_quantized(v) for v in state.values()):
        return state, None
    out: dict = {}
    for key, value in state.items():
        if key in packed:
            module = key.removesuffix(PACKED)
            weight, bias = (list(value) + [None, None])[:2]
            out[f"{module}weight"] = weight
            if bias is not None:
                out[f"{module}bias"] = bias
        elif isinstance(key, str) and key.endswith("_packed_params.dtype"):
            continue
        elif isinstance(key, str) and key.rsplit(".", 1)[-1] in QUANT_PARAMS and isinstance(value, torch.Tensor) \
                and value.numel() == 1:
            continue
        else:
            out[key] = value
    layers = sorted({k.rsplit(".", 1)[0] for k, v in out.items() if isinstance(k, str) and _is_quantized(v)})
    out = {k: v.dequantize() if _is_quantized(v) else v for k, v in out.items()}
    shown = ", ".join(layers[:6]) + (" ..." if len(layers) > 6 else "")
    return out, (f"quantized layers read as float32 weights (dequantized: {shown}); their scales and zero points "
                 "set aside")
