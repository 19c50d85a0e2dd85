"""ONNX for one quantized linear: `com.microsoft::MatMulNBits` on the packed codes plus an FP32 correction.

The contract is narrow: a layer name, its MixedWeight and the names of its input and output go in; nodes and
initializers come out. Initializer names derive from the layer name (`<name>.weight_Q4`, `_scales`, `_zp`,
`_corr_idx`, `_corr_val`, ...). A bias goes in only when the caller passes it (MatMulNBits' bias input); traced
graphs keep their own bias Add.

Correction subgraphs (x: [..., K], y: [..., N]):
  channel  y += MatMul(Gather(x, idx[c], axis=-1), val[c, N])
  lowrank  y += MatMul(MatMul(x, R^T[K, r]), L^T[r, N])
  element  ELL layout: each output row n keeps m = max nnz per row slots idx[n, :], val[n, :] (padding has val 0);
           y += ReduceSum(Gather(x, idx[N, m], axis=-1) * val[N, m], axis=-1)
           or the compact form of `channel` over the touched columns, whose [c, N] matrix is rebuilt in-graph
           from the sparse (position, value) pairs by constant ops that ORT folds at load time.
           `element_form` picks one; "auto" takes the cheaper by a cost model (see `choose_element_form`).
  block-offset  y += ReduceSum(Reshape(x, [rows, nb, g]), axis=-1) @ M^T[nb, N]  (GGUF's per-block mins: each
           block's offset multiplies the sum of the inputs it covers)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch
from onnx import NodeProto, TensorProto, helper, numpy_helper

from svdq_edge.errors import UserError
from svdq_edge.exporters.onnx.compat import MS_DOMAIN, make_onnx_model
from svdq_edge.quant.decompose import (
    BlockOffsetCorrection,
    ChannelCorrection,
    ElementCorrection,
    LowRankCorrection,
    MixedWeight,
)
from svdq_edge.quant.packing import PackedWeight, QuantFormat, split_halves, unpack_zero_points

KERNEL_OPS = {"matmulnbits": "MatMulNBits", "int8": "DynamicQuantizeMatMul"}  # QuantLinear.kernel -> the op
ELEMENT_FORMS = ("auto", "ell", "compact")
# Cost model for "auto": one ELL slot (a gather, multiply and reduce of one float per row of x) costs about this many
# multiply-adds of a dense GEMM on the same row: ~7 ns per slot against ~0.02 ns per GEMM MAC on 2 threads, measured
# with runtime/bench/correction.py (ORT's Gather on the last axis copies one float at a time).
ELL_SLOT_COST = 300.0


@dataclass
class OnnxFragment:
    """Nodes (in topological order) and initializers that compute one layer."""

    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)
    # (name, array) -> TensorProto, e.g. ExternalData.tensor: bytes written outside the protobuf, never copied
    make_tensor: Callable[[str, np.ndarray], TensorProto] | None = None

    def init(self, name: str, array: np.ndarray) -> str:
        if self.make_tensor is not None:
            self.initializers.append(self.make_tensor(name, array))
        else:
            self.initializers.append(numpy_helper.from_array(np.require(array, requirements="C"), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs) -> list[str]:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"{outputs[0]}_{op}", domain=domain, **attrs))
        return outputs


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def ell_layout(c: ElementCorrection, N: int) -> tuple[np.ndarray, np.ndarray]:
    """COO -> ELL: idx int64 [N, m], val float32 [N, m], m = max kept weights in a row (padding: idx 0, val 0)."""
    rows = c.rows.long()
    counts = torch.bincount(rows, minlength=N)
    m = max(int(counts.max()), 1) if rows.numel() else 1
    # Slot of each entry within its row (entries are row-major sorted).
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows.numel()) - starts[rows]
    idx = torch.zeros(N, m, dtype=torch.int64)
    val = torch.zeros(N, m, dtype=torch.float32)
    idx[rows, slot] = c.cols.long()
    val[rows, slot] = c.values.float()
    return _np(idx), _np(val)


def compact_layout(c: ElementCorrection, N: int) -> tuple[np.ndarray, np.ndarray]:
    """COO -> the distinct kept columns idx int64 [c] and a dense val float32 [c, N] (zero off the kept weights)."""
    cols, inverse = torch.unique(c.cols.long(), return_inverse=True)
    val = torch.zeros(cols.numel(), N)
    val[inverse, c.rows.long()] = c.values.float()
    return _np(cols), _np(val)


def choose_element_form(c: ElementCorrection, N: int) -> str:
    """'compact' when its dense [c, N] GEMM costs less than the ELL slots, else 'ell' (per row of x)."""
    m = int(torch.bincount(c.rows.long(), minlength=N).max()) if c.rows.numel() else 1
    n_cols = int(torch.unique(c.cols).numel())
    return "compact" if n_cols * N <= ELL_SLOT_COST * N * m else "ell"


class Accumulate(str, Enum):
    """How a correction's product joins the MatMulNBits output.

    GEMM: x flattened to 2D, one Gemm with beta = 1 accumulates into the output (no separate [rows, N] product:
          fastest with many rows, i.e. encoders and prefill; 4 extra reshape nodes).
    ADD:  Gather on the last axis, MatMul, Add, on any rank (3 nodes: at one token per step the per-node cost
          dominates, and this form decodes SmolLM2 1.3 ms/token faster than GEMM, see docs/decoders.md).
    GEMM_2D: x is already [rows, K] (the fused decoder keeps its token stream 2D): Gather and one Gemm, 2 nodes.
    """

    GEMM = "gemm"
    ADD = "add"
    GEMM_2D = "gemm-2d"


@dataclass(frozen=True)
class AccuracyLevels:
    """MatMulNBits accuracy_level by container width: `default`, and overrides as (bits, level) pairs.

    Level 0 computes in FP32 (the PyTorch reference's numbers); 4 quantizes the activations to int8 on CPU (fast,
    approximate). "0,8:4" keeps 4-bit layers exact and runs 8-bit ones on int8 activations (at level 0 they run as
    two 4-bit halves, see runs_split, which costs SmolLM2's 8-bit head 0.9 ms per token).
    """

    default: int = 0
    by_bits: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        for level in (self.default, *(lv for _, lv in self.by_bits)):
            if level not in range(5):
                raise UserError(f"accuracy level must be in 0-4, got {level}")

    @classmethod
    def default_for(cls, causal_lm: bool, target: str = "cpu") -> AccuracyLevels:
        """The default of every export (CLI, API): 4 for causal LMs (SmolLM2's GGUF at level 4 has llama.cpp's
        perplexity at 0.7x level 0's time per token, docs/gguf.md), 0 for encoders (the PyTorch reference's
        numbers; their int8 candidates are chosen by `run`). The web target is 0 for both: onnxruntime-web's WASM
        MatMulNBits computes in FP32 whatever the level (measured: SmolLM2's tokens there are level 0's), so a level-0
        file is validated in Python as the browser computes it."""
        return cls(4 if causal_lm and target != "web" else 0)

    def for_bits(self, bits: int) -> int:
        return dict(self.by_bits).get(bits, self.default)

    @classmethod
    def of(cls, value: int | str | AccuracyLevels) -> AccuracyLevels:
        """From an int, an AccuracyLevels, or text: "4", or "0,8:4" (a default, then bits:level overrides)."""
        if isinstance(value, AccuracyLevels):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            first, *rest = str(value).split(",")
            pairs = tuple(tuple(int(x) for x in r.split(":")) for r in rest)
            if any(len(p) != 2 for p in pairs):
                raise ValueError
            return cls(int(first), pairs)
        except ValueError:
            raise UserError(f"accuracy level {value!r}: expected a level 0-4, optionally followed by bits:level "
                             "overrides (e.g. 0,8:4)") from None

    def __str__(self) -> str:
        return ",".join([str(self.default), *(f"{b}:{lv}" for b, lv in self.by_bits)])


def runs_split(p: PackedWeight, levels: int | AccuracyLevels) -> bool:
    """Whether this layer is emitted as two 4-bit halves (packing.split_halves): 8-bit codes asked to compute in
    FP32 (level 0), where 8-bit MatMulNBits has no CPU fast path and the halves do (1.7 ms against 78 ms for
    SmolLM2's [49152, 576] head at one token, docs/decoders.md)."""
    return (p.fmt is QuantFormat.INT8 and AccuracyLevels.of(levels).for_bits(8) == 0
            and p.K == p.n_blocks * p.block_size)


def has_default_zero_points(p: PackedWeight) -> bool:
    """Every block's zero point equals 2^(bits-1) of the container (what MatMulNBits assumes when none is given)."""
    return bool((unpack_zero_points(p) == 2 ** (p.fmt.value - 1)).all())


def quant_linear_fragment(name: str, mixed: MixedWeight, x: str, y: str, element_form: str = "auto",
                          accuracy_level: int | AccuracyLevels = 0, bias: np.ndarray | None = None,
                          accumulate: Accumulate = Accumulate.GEMM,
                          make_tensor: Callable[[str, np.ndarray], TensorProto] | None = None,
                          kernel: str = "matmulnbits") -> OnnxFragment:
    """Nodes computing y = x @ (dequant(Q) + S)^T (+ bias) for the layer called `name`.

    `bias` float32 [N], when given, is MatMulNBits' own bias input (no separate Add); traced graphs keep theirs.
    `accuracy_level`: one level, or levels by container width (AccuracyLevels).
    `make_tensor` builds the initializers (see OnnxFragment).
    `kernel` "int8": DynamicQuantizeMatMul on per-output-channel int8 codes (see `_int8_matmul`).
    """
    if element_form not in ELEMENT_FORMS:
        raise ValueError(f"element_form must be one of {ELEMENT_FORMS}, got {element_form!r}")
    if kernel not in KERNEL_OPS:
        raise ValueError(f"kernel must be one of {', '.join(KERNEL_OPS)}, got {kernel!r}")
    p = mixed.packed
    f = OnnxFragment(make_tensor=make_tensor)
    w = f"{name}.weight"
    if kernel == "int8":
        return _int8_matmul(f, w, mixed, x, y, bias, accumulate)
    level = AccuracyLevels.of(accuracy_level).for_bits(p.fmt.value)
    x_in = x
    if runs_split(p, accuracy_level):  # exact 8-bit codes on the 4-bit FP32 path: [x, x] @ [W_hi | W_lo]^T
        p = split_halves(p)
        (x_in,) = f.node("Concat", [x, x], [f"{w}_x_twice"], axis=-1)
    bits = p.fmt.value  # container bits: 3-bit codes run as 4-bit with explicit zero points
    inputs = [f.init(f"{w}_Q{bits}", _np(p.B)), f.init(f"{w}_scales", _np(p.scales).reshape(-1))]
    # MatMulNBits' default zero point is 2^(bits-1): symmetric codes need no zero-point tensor.
    inputs.append("" if has_default_zero_points(p) else f.init(f"{w}_zp", _np(p.zero_points).reshape(-1)))
    if bias is not None:
        inputs += ["", f.init(f"{name}.bias", np.asarray(bias, dtype=np.float32))]  # no g_idx, then bias
    c = mixed.correction
    base = y if c is None else f"{w}_mnb_out"
    f.node("MatMulNBits", [x_in, *inputs], [base], domain=MS_DOMAIN, K=p.K, N=p.N, bits=bits,
           block_size=p.block_size, accuracy_level=level)
    if c is not None:  # corrections read x and the layer's own shape
        p = mixed.packed
        writer = CORRECTION_WRITERS.get(type(c))
        if writer is None:
            raise TypeError(f"unsupported correction {type(c).__name__}")
        writer(f, w, x, c, base, y, p.K, p.N, accumulate, element_form)
    return f


def _lowrank(f: OnnxFragment, w: str, x: str, c: LowRankCorrection, base: str, y: str, K: int, N: int,
             accumulate: Accumulate, element_form: str) -> None:
    rows = _rows(f, w, x, K, accumulate)
    (h,) = f.node("MatMul", [rows, f.init(f"{w}_corr_R", _np(c.R.T))], [f"{w}_corr_h"])  # [rows, r]
    _accumulate(f, w, h, f.init(f"{w}_corr_L", _np(c.L.T)), base, y, N, accumulate)  # L^T [r, N]


def _channel(f: OnnxFragment, w: str, x: str, c: ChannelCorrection, base: str, y: str, K: int, N: int,
             accumulate: Accumulate, element_form: str) -> None:
    _gather_accumulate(f, w, x, _np(c.channels), _np(c.values.T), base, y, K, N, accumulate)


def _block_offset(f: OnnxFragment, w: str, x: str, c: BlockOffsetCorrection, base: str, y: str, K: int, N: int,
                  accumulate: Accumulate, element_form: str) -> None:
    _block_offset_accumulate(f, w, x, c, base, y, K, N, accumulate)


def _element(f: OnnxFragment, w: str, x: str, c: ElementCorrection, base: str, y: str, K: int, N: int,
             accumulate: Accumulate, element_form: str) -> None:
    form = choose_element_form(c, N) if element_form == "auto" else element_form
    if form == "compact":
        _compact_accumulate(f, w, x, c, base, y, K, N, accumulate)
        return
    idx, val = ell_layout(c, N)
    (g,) = f.node("Gather", [x, f.init(f"{w}_corr_idx", idx)], [f"{w}_corr_g"], axis=-1)  # [..., N, m]
    (prod,) = f.node("Mul", [g, f.init(f"{w}_corr_val", val)], [f"{w}_corr_prod"])
    axes = f.init(f"{w}_corr_axes", np.array([-1], dtype=np.int64))
    (corr,) = f.node("ReduceSum", [prod, axes], [f"{w}_corr_out"], keepdims=0)
    f.node("Add", [base, corr], [y])


# The ONNX of each correction structure (quant/decompose.py): a new structure adds its writer here.
CORRECTION_WRITERS = {LowRankCorrection: _lowrank, ChannelCorrection: _channel,
                      BlockOffsetCorrection: _block_offset, ElementCorrection: _element}


def _int8_matmul(f: OnnxFragment, w: str, mixed: MixedWeight, x: str, y: str, bias: np.ndarray | None,
                 accumulate: Accumulate) -> OnnxFragment:
    """y = DynamicQuantizeMatMul(x * mask, B int8 [K, N], scale [N] or [1]) (+ bias) + correction(x).

    DynamicQuantizeMatMul quantizes its input to uint8 with one scale per tensor at run time; the kept input channels
    are zeroed in that input by `mask`, so an outlier channel no longer sets the step for the others, and they come
    back exactly in FP32 through the channel correction. A layer's own kept channels have zero codes, but rows
    concatenated from several layers (q/k/v) mask the union of their channels: the codes of a member that did not
    keep a masked channel move into the correction, so no weight is lost."""
    p, c = mixed.packed, mixed.correction
    if p.n_blocks != 1 or p.bits != 8 or not has_default_zero_points(p):
        raise ValueError(f"{w}: the int8 kernel takes symmetric 8-bit codes with one block per row")
    if c is not None and not isinstance(c, ChannelCorrection):
        raise ValueError(f"{w}: the int8 kernel takes a channel correction, got {type(c).__name__}")
    B = (p.B.reshape(p.N, -1)[:, : p.K].to(torch.int16) - 128).to(torch.int8)  # [N, K]
    inputs = [x]
    if c is not None:
        mask = np.ones(p.K, dtype=np.float32)
        mask[_np(c.channels)] = 0.0
        inputs = f.node("Mul", [x, f.init(f"{w}_int8_mask", mask)], [f"{w}_int8_x"])
        values = c.values + B[:, c.channels].float() * p.scales.reshape(-1, 1)  # [N, k]
    scales = _np(p.scales).reshape(-1)
    if (scales == scales[0]).all():  # one scale per tensor: ORT folds it into the GEMM (per column: a second pass)
        scales = scales[:1]
    inputs += [f.init(f"{w}_int8", _np(B.T.contiguous())), f.init(f"{w}_scales", scales), ""]
    if bias is not None:
        inputs.append(f.init(f"{name_of(w)}.bias", np.asarray(bias, dtype=np.float32)))
    base = y if c is None else f"{w}_int8_out"
    f.node("DynamicQuantizeMatMul", inputs, [base], domain=MS_DOMAIN)
    if c is not None:
        _gather_accumulate(f, w, x, _np(c.channels), _np(values.T), base, y, p.K, p.N, accumulate)
    return f


def name_of(w: str) -> str:
    """The layer name of a `<layer>.weight` prefix."""
    return w[: -len(".weight")]


def _flatten(f: OnnxFragment, w: str, x: str, K: int) -> str:
    """x [..., K] -> [rows, K] (a view: no copy)."""
    (x2d,) = f.node("Reshape", [x, f.init(f"{w}_shape_in", np.array([-1, K], dtype=np.int64))], [f"{w}_x2d"])
    return x2d


def _rows(f: OnnxFragment, w: str, x: str, K: int, accumulate: Accumulate) -> str:
    """x as the correction reads it: flattened to 2D for Gemm, as it is for MatMul + Add."""
    return _flatten(f, w, x, K) if accumulate is Accumulate.GEMM else x


def _accumulate(f: OnnxFragment, w: str, a2d: str, b: str, base: str, y: str, N: int,
                accumulate: Accumulate = Accumulate.GEMM) -> None:
    """y = base + a2d @ b, with the sum done inside one Gemm (beta = 1) rather than a MatMul and an Add.

    The correction's product never exists as a separate [rows, N] tensor: Gemm accumulates into C, which saves a
    full pass over the output (the measured cost of the MatMul + Add form, see runtime/bench/correction.py).
    With Accumulate.ADD, `a2d` may have any rank: MatMul, then Add.
    """
    if accumulate is Accumulate.ADD:
        (prod,) = f.node("MatMul", [a2d, b], [f"{w}_corr_out"])
        f.node("Add", [base, prod], [y])
        return
    if accumulate is Accumulate.GEMM_2D:
        f.node("Gemm", [a2d, b, base], [y], alpha=1.0, beta=1.0)
        return
    (c2d,) = f.node("Reshape", [base, f.init(f"{w}_shape_out", np.array([-1, N], dtype=np.int64))], [f"{w}_c2d"])
    (y2d,) = f.node("Gemm", [a2d, b, c2d], [f"{w}_y2d"], alpha=1.0, beta=1.0)
    (shape,) = f.node("Shape", [base], [f"{w}_out_shape"])
    f.node("Reshape", [y2d, shape], [y])


def _gather_accumulate(f: OnnxFragment, w: str, x: str, idx: np.ndarray, val_t: np.ndarray, base: str, y: str,
                       K: int, N: int, accumulate: Accumulate = Accumulate.GEMM) -> None:
    """y = base + Gather(x, idx, axis=-1) @ val_t, with idx int64 [c] and val_t float32 [c, N]."""
    rows = _rows(f, w, x, K, accumulate)
    (g,) = f.node("Gather", [rows, f.init(f"{w}_corr_idx", idx.astype(np.int64))], [f"{w}_corr_g"], axis=-1)
    _accumulate(f, w, g, f.init(f"{w}_corr_val", val_t.astype(np.float32)), base, y, N, accumulate)


def _block_offset_accumulate(f: OnnxFragment, w: str, x: str, c: BlockOffsetCorrection, base: str, y: str, K: int,
                             N: int, accumulate: Accumulate) -> None:
    """y = base + (x summed over each g-block) @ M^T. The block sums are [rows, nb] whatever the rank of x, so the
    MatMul + Add form (which keeps x's rank) takes the Gemm one here."""
    nb = c.M.shape[1]
    shape = f.init(f"{w}_corr_blocks", np.array([-1, nb, c.group(K)], dtype=np.int64))
    (xb,) = f.node("Reshape", [x, shape], [f"{w}_corr_x"])  # [rows, nb, g], a view
    axes = f.init(f"{w}_corr_axes", np.array([-1], dtype=np.int64))
    (sums,) = f.node("ReduceSum", [xb, axes], [f"{w}_corr_sums"], keepdims=0)  # [rows, nb]
    mode = Accumulate.GEMM if accumulate is Accumulate.ADD else accumulate
    _accumulate(f, w, sums, f.init(f"{w}_corr_M", _np(c.M.float().T)), base, y, N, mode)  # M^T [nb, N]


def _compact_accumulate(f: OnnxFragment, w: str, x: str, c: ElementCorrection, base: str, y: str, K: int,
                        N: int, accumulate: Accumulate = Accumulate.GEMM) -> None:
    """Compact element form, stored sparsely: the file holds the touched columns, each kept weight's flat position
    in the [c, N] matrix (int32) and its value; ScatterElements into zeros rebuilds the matrix from constants only,
    so ONNX Runtime folds it once at session creation and the file never holds a dense (mostly zero) copy."""
    cols, dense_t = compact_layout(c, N)
    pos = np.flatnonzero(dense_t.reshape(-1) != 0)
    shape = f.init(f"{w}_corr_shape", np.array([dense_t.size], dtype=np.int64))
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    (zeros,) = f.node("ConstantOfShape", [shape], [f"{w}_corr_zeros"], value=zero)
    (flat,) = f.node("ScatterElements", [zeros, f.init(f"{w}_corr_pos", pos.astype(np.int32)),
                                         f.init(f"{w}_corr_val", dense_t.reshape(-1)[pos].astype(np.float32))],
                     [f"{w}_corr_flat"], axis=0)
    dims = f.init(f"{w}_corr_dims", np.array(dense_t.shape, dtype=np.int64))
    (dense,) = f.node("Reshape", [flat, dims], [f"{w}_corr_dense"])
    rows = _rows(f, w, x, K, accumulate)
    (g,) = f.node("Gather", [rows, f.init(f"{w}_corr_idx", cols.astype(np.int64))], [f"{w}_corr_g"], axis=-1)
    _accumulate(f, w, g, dense, base, y, N, accumulate)


OPSET = 17


def single_layer_model(fragment: OnnxFragment, K: int, N: int, x: str = "x", y: str = "y"):
    """A standalone ModelProto computing one fragment (x [..., K] -> y [..., N]), for tests and benchmarks."""
    graph = helper.make_graph(
        fragment.nodes, "layer",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "seq", K])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["batch", "seq", N])],
        initializer=fragment.initializers,
    )
    return make_onnx_model(graph, OPSET)
