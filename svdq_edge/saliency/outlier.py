"""`outlier`: the input channels with the largest activations (s_j), whatever the weights.

For the int8 kernel (`kernel=int8`): ONNX Runtime's DynamicQuantizeMatMul quantizes a layer's input with one scale
per tensor, so a few outlier channels set the step for all the others (the LLM.int8() observation). Keeping those
channels in the FP32 correction takes them out of the int8 input. s_j is the data-free activation-scale estimate
(mean |x_j| on random token sequences, `apply.synthetic_input_scales`) or calibration statistics.
"""

from torch import Tensor

from svdq_edge.saliency.registry import ScoreContext, register


@register("outlier", "largest activation scale s_j per input channel (for the int8 kernel)", uses_input_scale=True)
def outlier_scores(W: Tensor, ctx: ScoreContext) -> Tensor:
    if ctx.input_scale is None:
        raise ValueError("method 'outlier' needs activation scales (data-free estimate or calibration)")
    return ctx.input_scale.to(W.dtype).reshape(1, -1).expand_as(W).contiguous()
