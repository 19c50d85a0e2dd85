"""Frozen, validated quantization configuration, saved next to every artifact as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum
from types import SimpleNamespace

from svdq_edge.errors import UserError

SUPPORTED_BITS = (2, 3, 4, 8)
HEAD_BITS = (4, 8)  # MatMulNBits widths with a fast CPU path that GatherBlockQuantized also reads
DEFAULT_SKIP = ("classifier", "pooler", "lm_head", "score", "qa_outputs")


class Structure(str, Enum):
    """Shape of the FP32 part kept beside the block-quantized weight."""

    ELEMENT = "element"  # top-k individual weights (COO correction)
    CHANNEL = "channel"  # whole input channels (Gather + compact MatMul)
    LOWRANK = "lowrank"  # rank-r SVD branch U_r S_r V_r^T; the residual is quantized
    BLOCK_OFFSET = "block-offset"  # one FP32 offset per block (GGUF's mins): made by transcoding, not by decompose

    @classmethod
    def choices(cls) -> list[Structure]:
        """The structures `decompose` makes from FP32 weights."""
        return [s for s in cls if s is not cls.BLOCK_OFFSET]


class Kernel(str, Enum):
    """The ONNX Runtime kernel a quantized linear runs on."""

    NBITS = "matmulnbits"  # block-wise 2/3/4/8-bit codes, MatMulNBits (the default)
    INT8 = "int8"  # per-output-channel symmetric int8 weights, DynamicQuantizeMatMul (int8 x int8 at run time)


class Int8Scale(str, Enum):
    """The weight scale of an int8-kernel layer. DynamicQuantizeMatMul applies a per-column scale in a separate pass
    over its output (3% of MiniLM's latency over 24 layers, docs/encoders.md); one scale per tensor rides in its
    GEMM, but costs fidelity where output channels differ in range."""

    COLUMN = "column"  # one scale per output channel
    TENSOR = "tensor"  # one scale for the tensor (shared by the siblings a fused graph packs into one matmul)
    AUTO = "auto"  # per packed group, chosen by end-to-end sensitivity (svdq_edge/quant/int8_scale.py)


class ConfigError(UserError, ValueError):
    """A configuration value is out of range; the message names the field."""


SYNTHETIC = "synthetic"
SYNTHETIC_KINDS = ("random", "vocab", "generated")  # svdq_edge/calib/synthetic_calib.py


def synthetic_kind(spec: str | None) -> str | None:
    """The synthetic calibration kind a `calib_data` value names ("auto" for plain `synthetic`); None for a file."""
    if spec is None or not str(spec).startswith(SYNTHETIC):
        return None
    kind = str(spec)[len(SYNTHETIC):].lstrip(":") or "auto"
    if kind not in (*SYNTHETIC_KINDS, "auto"):
        raise ConfigError(f"calib_data {spec!r}: synthetic kinds are {', '.join(SYNTHETIC_KINDS)}")
    return kind


@dataclass(frozen=True)
class QuantConfig:
    """Everything that determines a quantized model, given the FP32 weights.

    Defaults (range saliency, channel structure, no clipping, 4-bit embedding table) are the best data-free setting
    we measured whose ONNX correction stays cheap; docs/results.md has the numbers behind them.

    bits:        2, 3, 4 or 8 (3-bit codes are stored in a 4-bit container, as MatMulNBits has no 3-bit layout).
    block_size:  power of two in [16, 256]; blocks run along K (the input dimension) per output row.
    symmetric:   symmetric codes (zero point fixed at 2^(bits-1)) instead of asymmetric min/max with a zero point.
    method:      saliency method name (see `svdq_edge.saliency.available()`); with structure lowrank, a method that
                 only ranks weights is recorded as `svd`, the SVD branch that runs (`lowrank_ignores`).
    keep:        fraction of each layer's weights held in FP32, in [0, 0.5].
    structure:   element / channel / lowrank.
    rank:        SVD rank for the `svd*` scores: an int >= 1, a float in (0, 1) read as a fraction of spectral energy,
                 or None for the method's default.
    clip:        search a per-block shrink ratio of the min/max range that minimises the block's squared error.
    seed:        seed of the `random` method (and of randomized SVD).
    embedding_bits: None keeps the input token embedding in FP32; 2, 4 or 8 block-quantizes it (same block_size),
                 exported as GatherBlockQuantized.
    head_bits:   None leaves a causal LM's output head to `skip`; 4 or 8 block-quantizes it (round to nearest, no
                 correction: MatMulNBits alone). A head tied to the input embedding then shares its codes with the
                 embedding (GatherBlockQuantized reads the same initializer), whatever `embedding_bits` says.
    correct:     module-name substrings of the layers that get the FP32 correction (`keep` of their weights); the
                 others are plain block-quantized codes. Empty: every quantized layer. In a decoder the correction
                 pays on the layers whose inputs carry outlier channels (attention output, SwiGLU product: o_proj,
                 down_proj), and each corrected layer costs two graph nodes per step (docs/decoders.md).
    skip:        module-name substrings left in FP32 (task heads by default).
    calib_data:  calibration file for calibrated methods (awq, spqr, gptq, rosaq): a GLUE TSV (use its train split,
                 never the evaluation file) or a plain text file for causal LMs; or `synthetic[:random|:vocab|
                 :generated]`: inputs the tool makes itself (calib/synthetic_calib.py), no user data. Ignored by
                 data-free methods.
    calib_samples, calib_seq_len: how many rows (TSV) or token windows (text) are drawn with `seed`, and their length.
    kernel:      the kernel of the 8-bit layers: matmulnbits (block-wise codes, MatMulNBits) or int8: per-output-
                 channel symmetric int8 weights run by DynamicQuantizeMatMul, which quantizes the input per tensor at
                 run time; the kept input channels are zeroed in that input and added in FP32 (channel structure with
                 `method=outlier` takes the outlier activation channels out of the int8 path); `block_size` does not
                 apply to them. Layers at other widths always run on MatMulNBits.
    int8_scale:  column, tensor or auto: the weight scale of the int8-kernel layers (`Int8Scale`); auto keeps
                 per-column scales only where one scale per tensor moves the output most, within
                 `svdq_edge.quant.int8_scale.GROWTH` of the all-column error (data-free, random token sequences).
    layer_int8_scale: {module name: column|tensor}, what auto chose for each int8 layer (saved, so a saved config
                 rebuilds the same model); it overrides `int8_scale`.
    bits_budget: per-layer mixed precision: each quantized linear gets `bits` or 8, chosen so that the average storage
                 bits per weight of the quantized linears (codes, scales, zero points and corrections all counted; the
                 embedding table apart) stays within the budget, the most sensitive groups first
                 (`svdq_edge.quant.mixed_bits`, `svdq_edge.calib.sensitivity`). None: every layer at `bits`.
    layer_bits:  {module name: bits} overriding `bits` per layer; the budget's assignment is saved here, so a saved
                 config rebuilds the same model.
    layer_keep:  {module-name substring: keep} overriding `keep` for the layers whose name contains it (the longest
                 matching substring wins; `correct` still zeroes the others). Written only when set, so configs made
                 before it keep their bytes and cache keys.
    """

    bits: int = 4
    block_size: int = 128
    symmetric: bool = False
    method: str = "range"
    keep: float = 0.01
    structure: Structure = Structure.CHANNEL
    rank: int | float | None = None
    clip: bool = False
    seed: int = 0
    skip: tuple[str, ...] = field(default=DEFAULT_SKIP)
    correct: tuple[str, ...] = ()
    embedding_bits: int | None = 4
    head_bits: int | None = None
    calib_data: str | None = None
    calib_samples: int = 128
    calib_seq_len: int = 128
    kernel: Kernel = Kernel.NBITS
    bits_budget: float | None = None
    layer_bits: tuple[tuple[str, int], ...] = ()
    int8_scale: Int8Scale = Int8Scale.COLUMN
    layer_int8_scale: tuple[tuple[str, str], ...] = ()
    layer_keep: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        # Coerce JSON-friendly inputs (strings, lists) to their typed form before validating.
        object.__setattr__(self, "structure", _coerce_structure(self.structure))
        try:
            object.__setattr__(self, "kernel", Kernel(self.kernel))
        except ValueError:
            raise ConfigError(f"kernel must be one of {', '.join(k.value for k in Kernel)}, got {self.kernel!r}") \
                from None
        self._check_mixed()
        self._check_int8_scale()
        if self.kernel is Kernel.INT8 and (8 not in self.widths() or self.structure is not Structure.CHANNEL):
            raise ConfigError("kernel int8 takes 8-bit layers (bits 8 or a bits_budget) and the channel structure "
                              "(its kept input channels are masked out of the int8 product)")
        object.__setattr__(self, "skip", tuple(self.skip))
        object.__setattr__(self, "correct", tuple(self.correct))
        if not all(isinstance(c, str) and c for c in self.correct):
            raise ConfigError(f"correct must hold non-empty module-name substrings, got {list(self.correct)}")
        if self.bits not in SUPPORTED_BITS:
            raise ConfigError(f"bits must be one of {SUPPORTED_BITS}, got {self.bits}")
        bs = self.block_size
        if not isinstance(bs, int) or bs < 16 or bs > 256 or bs & (bs - 1):
            raise ConfigError(f"block_size must be a power of two in [16, 256], got {bs}")
        if not (0.0 <= float(self.keep) <= 0.5):
            raise ConfigError(f"keep must be a fraction in [0, 0.5], got {self.keep}")
        self._check_layer_keep()
        if self.rank is not None:
            self._check_rank()
        if self.embedding_bits is not None and self.embedding_bits not in (2, 4, 8):
            raise ConfigError(f"embedding_bits must be 2, 4, 8 or None, got {self.embedding_bits}")
        if self.head_bits is not None and self.head_bits not in HEAD_BITS:
            raise ConfigError(f"head_bits must be one of {HEAD_BITS} or None, got {self.head_bits}")
        if not isinstance(self.calib_samples, int) or self.calib_samples < 1:
            raise ConfigError(f"calib_samples must be an int >= 1, got {self.calib_samples!r}")
        if not isinstance(self.calib_seq_len, int) or not 8 <= self.calib_seq_len <= 8192:
            raise ConfigError(f"calib_seq_len must be an int in [8, 8192], got {self.calib_seq_len!r}")
        if self.calib_data is not None:
            object.__setattr__(self, "calib_data", str(self.calib_data))
            synthetic_kind(self.calib_data)  # a misspelled synthetic kind fails here
        from svdq_edge.saliency import available  # local import: the registry imports this module

        if self.method not in available():
            raise ConfigError(f"unknown method {self.method!r}; choose from {', '.join(available())}")
        if self.structure is Structure.LOWRANK and lowrank_ignores(self.method):
            object.__setattr__(self, "method", "svd")  # what runs: the SVD branch (see lowrank_ignores)

    def _check_mixed(self) -> None:
        layer_bits = self.layer_bits.items() if isinstance(self.layer_bits, dict) else self.layer_bits
        try:
            pairs = tuple(sorted((str(n), int(b)) for n, b in layer_bits))
        except (TypeError, ValueError):
            raise ConfigError(f"layer_bits must map module names to bits, got {self.layer_bits!r}") from None
        object.__setattr__(self, "layer_bits", pairs)
        bad = sorted({b for _, b in pairs} - set(SUPPORTED_BITS))
        if bad:
            raise ConfigError(f"layer_bits must hold widths in {SUPPORTED_BITS}, got {bad}")
        if self.bits_budget is None:
            return
        if self.bits == 8:
            raise ConfigError("bits_budget mixes bits with 8-bit layers: give bits below 8")
        b = self.bits_budget
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not self.bits < b <= 32:
            raise ConfigError(f"bits_budget must be bits per weight above bits ({self.bits}) and at most 32, "
                              f"got {b!r}")
        object.__setattr__(self, "bits_budget", float(b))

    def _check_int8_scale(self) -> None:
        values = ", ".join(v.value for v in Int8Scale)
        try:
            object.__setattr__(self, "int8_scale", Int8Scale(self.int8_scale))
        except ValueError:
            raise ConfigError(f"int8_scale must be one of {values}, got {self.int8_scale!r}") from None
        pairs = self.layer_int8_scale.items() if isinstance(self.layer_int8_scale, dict) else self.layer_int8_scale
        try:
            pairs = tuple(sorted((str(n), Int8Scale(v).value) for n, v in pairs))
        except (TypeError, ValueError):
            raise ConfigError(f"layer_int8_scale must map module names to column or tensor, got "
                              f"{self.layer_int8_scale!r}") from None
        if any(v == Int8Scale.AUTO.value for _, v in pairs):
            raise ConfigError("layer_int8_scale holds resolved scales: column or tensor, not auto")
        object.__setattr__(self, "layer_int8_scale", pairs)
        if (self.int8_scale is not Int8Scale.COLUMN or pairs) and self.kernel is not Kernel.INT8:
            raise ConfigError("int8_scale applies to the int8 kernel (kernel int8)")

    def _check_layer_keep(self) -> None:
        pairs = self.layer_keep.items() if isinstance(self.layer_keep, dict) else self.layer_keep
        try:
            pairs = tuple(sorted((str(n), float(k)) for n, k in pairs))
        except (TypeError, ValueError):
            raise ConfigError(f"layer_keep must map module-name substrings to fractions, got {self.layer_keep!r}") \
                from None
        if any(not n or not 0.0 <= k <= 0.5 for n, k in pairs):
            raise ConfigError(f"layer_keep must map non-empty substrings to fractions in [0, 0.5], got {pairs}")
        object.__setattr__(self, "layer_keep", pairs)

    def widths(self) -> set[int]:
        """The code widths the layers may get: `bits`, 8 under a budget, and those of `layer_bits`."""
        return {self.bits, *(b for _, b in self.layer_bits), *((8,) if self.bits_budget is not None else ())}

    def _check_rank(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, (int, float)):
            raise ConfigError(f"rank must be an int >= 1 or an energy fraction in (0, 1), got {self.rank!r}")
        if isinstance(self.rank, float) and not self.rank.is_integer() and not 0.0 < self.rank < 1.0:
            raise ConfigError(f"rank as a float must be an energy fraction in (0, 1), got {self.rank}")
        if isinstance(self.rank, float) and self.rank.is_integer():
            object.__setattr__(self, "rank", int(self.rank))
        if isinstance(self.rank, int) and self.rank < 1:
            raise ConfigError(f"rank must be >= 1, got {self.rank}")

    @classmethod
    def defaults(cls) -> SimpleNamespace:
        """The fields' default values, unvalidated: validating a config imports every saliency method (and torch),
        which a command line's option declarations must not wait for."""
        return SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(cls)})

    def for_layer(self, name: str) -> QuantConfig:
        """The config of layer `name`: its width from `layer_bits` (else `bits`), the int8 kernel only at 8 bits, its
        keep from `layer_keep` (else `keep`), and `keep` 0 outside `correct` (when `correct` names any)."""
        bits = dict(self.layer_bits).get(name, self.bits)
        changes = {}
        if self.bits_budget is not None or self.layer_bits:
            changes = {"bits": bits, "bits_budget": None, "layer_bits": ()}
            if bits != 8:
                changes["kernel"] = Kernel.NBITS
        matches = [(len(s), k) for s, k in self.layer_keep if s in name]
        if matches:
            changes["keep"] = max(matches)[1]
        if self.correct and not any(c in name for c in self.correct):
            changes["keep"] = 0.0
        if changes.get("kernel") is Kernel.NBITS:
            changes |= {"int8_scale": Int8Scale.COLUMN, "layer_int8_scale": ()}
        elif self.layer_int8_scale:
            scale = dict(self.layer_int8_scale).get(name, Int8Scale.COLUMN)
            changes |= {"int8_scale": Int8Scale(scale), "layer_int8_scale": ()}
        return dataclasses.replace(self, **changes) if changes else self

    @property
    def container_bits(self) -> int:
        """Bits per code in the packed MatMulNBits layout (3-bit codes use a 4-bit container)."""
        return 4 if self.bits == 3 else self.bits

    def replace(self, **changes) -> QuantConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["structure"] = self.structure.value
        d["kernel"] = self.kernel.value
        d["skip"] = list(self.skip)
        d["correct"] = list(self.correct)
        d["layer_bits"] = dict(self.layer_bits)
        d["int8_scale"] = self.int8_scale.value
        d["layer_int8_scale"] = dict(self.layer_int8_scale)
        if self.layer_keep:
            d["layer_keep"] = dict(self.layer_keep)
        else:
            del d["layer_keep"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> QuantConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)


def lowrank_ignores(method: str) -> bool:
    """True for a saliency method that only ranks weights to keep: the lowrank structure never asks for its scores
    (it takes the SVD branch). A config records such a method as `svd`, the method that runs; the command line
    refuses it when the user named it."""
    from svdq_edge.saliency import get

    m = get(method)
    return m.keeps and not (m.basis or m.error_feedback) and method != "svd"


def _coerce_structure(value: Structure | str) -> Structure:
    names = ", ".join(s.value for s in Structure.choices())
    try:
        structure = Structure(value)
    except ValueError:
        raise ConfigError(f"structure must be one of {names}, got {value!r}") from None
    if structure not in Structure.choices():
        raise ConfigError(f"structure {structure.value!r} comes from transcoding a GGUF file; choose one of {names}")
    return structure


@dataclass(frozen=True)
class TranscodeConfig:
    """What determines a model transcoded from a quantized GGUF file (no choice is made: every weight keeps its
    GGML codes, scales and mins exactly).

    file:      the GGUF file as given.
    file_type: llama.cpp's name for the file's quantization mix (e.g. MOSTLY_Q4_1), from `general.file_type`.
    types:     GGML tensor type -> number of tensors of that type.
    """

    file: str
    file_type: str
    types: dict[str, int]
    kind: str = "gguf-transcode"

    def __post_init__(self) -> None:
        if self.kind != "gguf-transcode":
            raise ConfigError(f"unknown transcode kind {self.kind!r}")
        object.__setattr__(self, "types", dict(self.types))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TranscodeConfig:
        return cls(**d)


def config_from_dict(d: dict) -> QuantConfig | TranscodeConfig:
    """The config saved with a quantized folder: a quantization config, or a GGUF transcode record."""
    return TranscodeConfig.from_dict(d) if "kind" in d else QuantConfig.from_dict(d)
