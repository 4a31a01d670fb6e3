#!/usr/bin/env python3
"""Generate Jota's deterministic test models (random weights, real tokenizers).

No real weights are available offline, so the engines are tested against small
models whose weights are pseudo-random but whose file formats, tokenizers and
hyper-parameters are real:

  tiny-chat.gguf     qwen2 arch, 2 layers, n_embd 64; Qwen2 tokenizer (copied from
                     llama.cpp's models/ggml-vocab-qwen2.gguf) + Qwen2 ChatML template.
  tiny-embed.gguf    bert arch, 2 layers, n_embd 64, CLS pooling; bge tokenizer
                     (models/ggml-vocab-bert-bge.gguf).
  tiny-mamba.gguf    mamba arch (recurrent: a state per sequence, no KV cache), 2
                     layers, n_embd 64, d_inner 128, d_state 16; Qwen2 tokenizer and
                     ChatML template as tiny-chat.
  bench-chat.gguf    llama arch with SmolLM2-135M shapes (576/30 layers/9 heads/3 kv
                     heads/ff 1536, rope 1e5, ctx 8192, tied embeddings), Q8_0
                     weights, GPT-2 tokenizer (models/ggml-vocab-gpt-2.gguf) plus the
                     two ChatML control tokens. Runs at a real ~135M model's speed.
  tiny-whisper.bin   whisper.cpp legacy ggml format ("lmgg"), tiny.en hyper-parameters
                     and tensors (f16 matrices), real Slaney mel filterbank and the
                     GPT-2 byte-level vocabulary. Random weights plus one planted
                     "token chain" (see WHISPER_SCALES), so whisper.cpp decodes, for any
                     audio, one confident segment "<|0.00|> <6 pseudo-random words> <|1.00|>"
                     per 30-s window without temperature fallbacks.

Determinism: the output is a pure function of (GENERATOR_VERSION, --seed, the
vocab files in third_party/llama.cpp/models). Random values come from a
counter-based splitmix64 evaluated with numpy integer arithmetic (no numpy
Generator streams, no transcendental functions on the data path: the mel
filterbank's log/exp are done with Python's correctly-rounded `decimal`), and the
GGUF / ggml files are written by this script's own minimal writers, so the bytes
do not depend on the numpy, gguf-py or platform version. Nothing time- or
path-dependent is written into the files. (Checked: numpy 2.4.6 / Python 3.11.7 and
numpy 1.24.2 / Debian's Python 3.11 give byte-identical files.)

Idempotent: a model whose file already matches scripts/models/checksums.json is
left alone ("present"); --force regenerates. Generated files are checked against
checksums.json and a mismatch is an error (exit 1) unless --update-checksums is
given, which rewrites checksums.json (do that only when GENERATOR_VERSION/seed or
the models' definitions change on purpose).

Usage: scripts/models/generate_test_models.py [--out DIR] [--only NAME ...]
                                              [--force] [--seed N] [--update-checksums]
"""
from __future__ import annotations

import argparse
import decimal
import hashlib
import json
import math
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1
DEFAULT_SEED = 1234

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent.parent
VOCAB_DIR = REPO_ROOT / "third_party" / "llama.cpp" / "models"
CHECKSUMS_FILE = SCRIPT_DIR / "checksums.json"
DEFAULT_OUT = REPO_ROOT / "models" / "test"

# ----------------------------------------------------------------------------
# Deterministic counter-based random numbers (splitmix64), vectorized in numpy.
# ----------------------------------------------------------------------------
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_CHUNK = 1 << 22  # elements per vectorized chunk (bounds peak memory)
# Irwin-Hall(4) over 16-bit lanes: sum of four uniform integers in [0, 65535].
_IH_MEAN = 2 * 65535
_IH_STD = math.sqrt(4 * (65536.0 * 65536.0 - 1.0) / 12.0)  # sqrt is correctly rounded


def tensor_seed(seed: int, model: str, name: str) -> int:
    """Stable 64-bit seed for one tensor: sha256 of (version, global seed, model, name)."""
    key = f"jota-test-models/v{GENERATOR_VERSION}/{seed}/{model}/{name}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def _splitmix64(start: int, count: int, seed: int) -> np.ndarray:
    """splitmix64 outputs for counters start..start+count-1 (uint64 wrap-around arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.arange(start + 1, start + 1 + count, dtype=np.uint64)
        np.multiply(z, _GOLDEN, out=z)
        np.add(z, _U64(seed), out=z)
        np.bitwise_xor(z, z >> _U64(30), out=z)
        np.multiply(z, _MIX1, out=z)
        np.bitwise_xor(z, z >> _U64(27), out=z)
        np.multiply(z, _MIX2, out=z)
        np.bitwise_xor(z, z >> _U64(31), out=z)
    return z


def _normal_chunk(start: int, count: int, seed: int, std: float) -> np.ndarray:
    """Approximately normal float32 values (Irwin-Hall of four 16-bit lanes of one hash).

    Integer arithmetic, then one float64 multiply and one float64->float32 rounding:
    bit-identical everywhere.
    """
    z = _splitmix64(start, count, seed)
    m = _U64(0xFFFF)
    s = (z & m) + ((z >> _U64(16)) & m) + ((z >> _U64(32)) & m) + (z >> _U64(48))
    c = s.astype(np.int64) - _IH_MEAN
    return (c.astype(np.float64) * (std / _IH_STD)).astype(np.float32)


def _uniform_chunk(start: int, count: int, seed: int, lo: float, hi: float) -> np.ndarray:
    """Uniform float32 values in [lo, hi) from the 53 high bits of each hash."""
    z = _splitmix64(start, count, seed)
    u = (z >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)  # exact: 53-bit int * 2^-53
    return (lo + (hi - lo) * u).astype(np.float32)


class Init:
    """How to fill a tensor: ('normal', std) | ('uniform', lo, hi) | ('const', value) | ('array', ndarray)."""

    def __init__(self, kind: str, *args):
        self.kind, self.args = kind, args

    def chunks(self, seed: int, n: int):
        """Yield float32 chunks covering n elements in row-major order."""
        if self.kind == "array":
            arr = np.ascontiguousarray(self.args[0], dtype=np.float32).reshape(-1)
            assert arr.size == n, (arr.size, n)
            yield arr
            return
        for start in range(0, n, _CHUNK):
            cnt = min(_CHUNK, n - start)
            if self.kind == "normal":
                yield _normal_chunk(start, cnt, seed, self.args[0])
            elif self.kind == "uniform":
                yield _uniform_chunk(start, cnt, seed, self.args[0], self.args[1])
            elif self.kind == "const":
                yield np.full(cnt, self.args[0], dtype=np.float32)
            else:
                raise ValueError(self.kind)


def normal(std: float) -> Init:
    return Init("normal", std)


def const(v: float) -> Init:
    return Init("const", v)


ONES, ZEROS = const(1.0), const(0.0)

# ----------------------------------------------------------------------------
# ggml tensor types and encoders (own implementations: byte-stable).
# ----------------------------------------------------------------------------
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
_TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q8_0: "Q8_0"}


def nbytes_of(ggml_type: int, n: int) -> int:
    if ggml_type == GGML_F32:
        return 4 * n
    if ggml_type == GGML_F16:
        return 2 * n
    if ggml_type == GGML_Q8_0:
        assert n % 32 == 0
        return n // 32 * 34
    raise ValueError(ggml_type)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C roundf() semantics, exactly (same trick as ggml's reference / gguf-py)."""
    a = np.abs(x)
    f = np.floor(a)
    return np.sign(x) * (f + np.floor(2 * (a - f)))


def quantize_q8_0(x: np.ndarray) -> bytes:
    """Q8_0 exactly like ggml's quantize_row_q8_0_ref (float32 arithmetic)."""
    blocks = x.astype(np.float32, copy=False).reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = _round_half_away(blocks * inv[:, None]).astype(np.int8)
    out = np.empty((blocks.shape[0], 34), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def encode(ggml_type: int, chunk: np.ndarray) -> bytes:
    if ggml_type == GGML_F32:
        return chunk.astype("<f4", copy=False).tobytes()
    if ggml_type == GGML_F16:
        return chunk.astype(np.float32, copy=False).astype("<f2").tobytes()
    if ggml_type == GGML_Q8_0:
        return quantize_q8_0(chunk)
    raise ValueError(ggml_type)


class TensorSpec:
    """One tensor. `ne` is in ggml order (ne[0] = contiguous row length)."""

    def __init__(self, name: str, ne: tuple[int, ...], ggml_type: int, init: Init):
        self.name, self.ne, self.type, self.init = name, tuple(int(v) for v in ne), ggml_type, init
        self.n = int(np.prod(self.ne, dtype=np.int64))
        if ggml_type == GGML_Q8_0:
            assert self.ne[0] % 32 == 0, (name, ne)
        self.nbytes = nbytes_of(ggml_type, self.n)

    def write_data(self, fp, seed: int, model: str) -> None:
        tseed = tensor_seed(seed, model, self.name)
        for chunk in self.init.chunks(tseed, self.n):  # chunks are multiples of 32 elements
            fp.write(encode(self.type, chunk))


# ----------------------------------------------------------------------------
# Minimal GGUF v3 reader (raw KV bytes, for exact copying) and writer.
# ----------------------------------------------------------------------------
GGUF_MAGIC = b"GGUF"
GGUF_ALIGN = 32
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)
_SCALAR_FMT = {T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I", T_INT32: "<i",
               T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d"}


class KV:
    """A GGUF metadata value: type, raw little-endian bytes, and (for arrays) the element type."""

    def __init__(self, vtype: int, raw: bytes, sub: int | None = None, count: int | None = None):
        self.vtype, self.raw, self.sub, self.count = vtype, raw, sub, count

    def encoded(self) -> bytes:
        if self.vtype == T_ARRAY:
            return struct.pack("<IIQ", T_ARRAY, self.sub, self.count) + self.raw
        return struct.pack("<I", self.vtype) + self.raw


def _gguf_str(s: bytes | str) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv_u32(v: int) -> KV: return KV(T_UINT32, struct.pack("<I", v))
def kv_f32(v: float) -> KV: return KV(T_FLOAT32, struct.pack("<f", v))
def kv_bool(v: bool) -> KV: return KV(T_BOOL, struct.pack("<?", v))
def kv_str(v: str) -> KV: return KV(T_STRING, _gguf_str(v))


def kv_str_array(items: list[bytes]) -> KV:
    return KV(T_ARRAY, b"".join(_gguf_str(x) for x in items), T_STRING, len(items))


def kv_i32_array(items) -> KV:
    a = np.asarray(items, dtype="<i4")
    return KV(T_ARRAY, a.tobytes(), T_INT32, int(a.size))


def read_gguf_kv(path: Path) -> dict[str, KV]:
    """Read all metadata of a GGUF file as raw KVs (values are not re-encoded)."""
    data = path.read_bytes()
    if data[:4] != GGUF_MAGIC:
        raise ValueError(f"{path}: not a GGUF file")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version != 3:
        raise ValueError(f"{path}: GGUF version {version}, expected 3")
    off = 24
    out: dict[str, KV] = {}

    def skip_value(vtype: int, off: int) -> int:
        if vtype == T_STRING:
            (ln,) = struct.unpack_from("<Q", data, off)
            return off + 8 + ln
        return off + struct.calcsize(_SCALAR_FMT[vtype])

    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", data, off)
        key = data[off + 8: off + 8 + klen].decode("utf-8")
        off += 8 + klen
        (vtype,) = struct.unpack_from("<I", data, off)
        off += 4
        if vtype == T_ARRAY:
            sub, count = struct.unpack_from("<IQ", data, off)
            off += 12
            start = off
            if sub == T_STRING:
                for _ in range(count):
                    off = skip_value(T_STRING, off)
            else:
                off += struct.calcsize(_SCALAR_FMT[sub]) * count
            out[key] = KV(T_ARRAY, data[start:off], sub, count)
        else:
            start = off
            off = skip_value(vtype, off)
            out[key] = KV(vtype, data[start:off])
    return out


def kv_strings(kv: KV) -> list[bytes]:
    """Elements of a string-array KV as raw bytes."""
    assert kv.vtype == T_ARRAY and kv.sub == T_STRING
    items, off, raw = [], 0, kv.raw
    for _ in range(kv.count):
        (ln,) = struct.unpack_from("<Q", raw, off)
        items.append(raw[off + 8: off + 8 + ln])
        off += 8 + ln
    return items


def kv_scalar(kv: KV):
    if kv.vtype == T_STRING:
        return kv.raw[8:].decode("utf-8")
    return struct.unpack(_SCALAR_FMT[kv.vtype], kv.raw)[0]


def write_gguf(path: Path, kvs: list[tuple[str, KV]], tensors: list[TensorSpec], seed: int, model: str) -> None:
    def pad(n: int) -> int:
        return (GGUF_ALIGN - n % GGUF_ALIGN) % GGUF_ALIGN

    header = bytearray(GGUF_MAGIC + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    for key, kv in kvs:
        header += _gguf_str(key) + kv.encoded()
    offset = 0
    for t in tensors:
        header += _gguf_str(t.name) + struct.pack("<I", len(t.ne))
        header += b"".join(struct.pack("<Q", v) for v in t.ne)
        header += struct.pack("<IQ", t.type, offset)
        offset += t.nbytes + pad(t.nbytes)
    header += b"\0" * pad(len(header))
    with open(path, "wb") as fp:
        fp.write(header)
        for t in tensors:
            t.write_data(fp, seed, model)
            fp.write(b"\0" * pad(t.nbytes))


# ----------------------------------------------------------------------------
# Chat templates
# ----------------------------------------------------------------------------
# The chat template of Qwen/Qwen2-*-Instruct (tokenizer_config.json), verbatim.
QWEN2_CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Plain ChatML, no default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKEN_TYPE_CONTROL = 3

# ----------------------------------------------------------------------------
# Model definitions
# ----------------------------------------------------------------------------


def _tokenizer_kvs(vocab: dict[str, KV], skip=("tokenizer.chat_template",)) -> list[tuple[str, KV]]:
    return [(k, v) for k, v in vocab.items() if k.startswith("tokenizer.") and k not in skip]


def build_tiny_chat(seed: int, out: Path) -> None:
    vocab = read_gguf_kv(VOCAB_DIR / "ggml-vocab-qwen2.gguf")
    n_vocab = vocab["tokenizer.ggml.tokens"].count
    n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx = 64, 2, 4, 2, 128, 4096
    head_dim = n_embd // n_head
    n_gqa = head_dim * n_head_kv
    A = "qwen2"
    kvs = [
        ("general.architecture", kv_str(A)),
        ("general.name", kv_str("jota-tiny-chat (random weights)")),
        ("general.file_type", kv_u32(7)),  # LLAMA_FTYPE_MOSTLY_Q8_0
        ("general.quantization_version", kv_u32(2)),
        (f"{A}.block_count", kv_u32(n_layer)),
        (f"{A}.context_length", kv_u32(n_ctx)),
        (f"{A}.embedding_length", kv_u32(n_embd)),
        (f"{A}.feed_forward_length", kv_u32(n_ff)),
        (f"{A}.attention.head_count", kv_u32(n_head)),
        (f"{A}.attention.head_count_kv", kv_u32(n_head_kv)),
        (f"{A}.rope.freq_base", kv_f32(1000000.0)),
        (f"{A}.attention.layer_norm_rms_epsilon", kv_f32(1e-6)),
        *_tokenizer_kvs(vocab),
        ("tokenizer.chat_template", kv_str(QWEN2_CHATML_TEMPLATE)),
    ]
    # Layer weights dominate the small (tied) embeddings, so the output depends on the
    # context instead of echoing the last token (which large tied embeddings cause).
    W = 0.15
    Q8, F32 = GGML_Q8_0, GGML_F32
    # Tied embeddings: qwen2 in llama.cpp falls back to token_embd when output.weight is absent.
    tensors = [TensorSpec("token_embd.weight", (n_embd, n_vocab), Q8, normal(0.05)),
               TensorSpec("output_norm.weight", (n_embd,), F32, ONES)]
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors += [
            TensorSpec(b + "attn_norm.weight", (n_embd,), F32, ONES),
            TensorSpec(b + "attn_q.weight", (n_embd, n_embd), Q8, normal(W)),
            TensorSpec(b + "attn_q.bias", (n_embd,), F32, normal(W)),
            TensorSpec(b + "attn_k.weight", (n_embd, n_gqa), Q8, normal(W)),
            TensorSpec(b + "attn_k.bias", (n_gqa,), F32, normal(W)),
            TensorSpec(b + "attn_v.weight", (n_embd, n_gqa), Q8, normal(W)),
            TensorSpec(b + "attn_v.bias", (n_gqa,), F32, normal(W)),
            TensorSpec(b + "attn_output.weight", (n_embd, n_embd), Q8, normal(W)),
            TensorSpec(b + "ffn_norm.weight", (n_embd,), F32, ONES),
            TensorSpec(b + "ffn_gate.weight", (n_embd, n_ff), Q8, normal(W)),
            TensorSpec(b + "ffn_up.weight", (n_embd, n_ff), Q8, normal(W)),
            TensorSpec(b + "ffn_down.weight", (n_ff, n_embd), Q8, normal(W)),
        ]
    write_gguf(out, kvs, tensors, seed, "tiny-chat")


def build_tiny_mamba(seed: int, out: Path) -> None:
    """A recurrent model (no KV cache: a state per sequence that cannot be rolled
    back token by token), for the engine's paths that differ from a transformer's."""
    vocab = read_gguf_kv(VOCAB_DIR / "ggml-vocab-qwen2.gguf")
    n_vocab = vocab["tokenizer.ggml.tokens"].count
    n_embd, n_layer, n_ctx = 64, 2, 4096
    d_inner, d_conv, d_state, dt_rank = 2 * n_embd, 4, 16, 4  # llama.cpp supports an expansion of 2 only
    A = "mamba"
    kvs = [
        ("general.architecture", kv_str(A)),
        ("general.name", kv_str("jota-tiny-mamba (random weights)")),
        ("general.file_type", kv_u32(0)),  # LLAMA_FTYPE_ALL_F32 (token_embd is Q8_0)
        ("general.quantization_version", kv_u32(2)),
        (f"{A}.block_count", kv_u32(n_layer)),
        (f"{A}.context_length", kv_u32(n_ctx)),
        (f"{A}.embedding_length", kv_u32(n_embd)),
        (f"{A}.feed_forward_length", kv_u32(0)),
        (f"{A}.attention.head_count", kv_u32(0)),
        (f"{A}.attention.layer_norm_rms_epsilon", kv_f32(1e-5)),
        (f"{A}.ssm.conv_kernel", kv_u32(d_conv)),
        (f"{A}.ssm.inner_size", kv_u32(d_inner)),
        (f"{A}.ssm.state_size", kv_u32(d_state)),
        (f"{A}.ssm.time_step_rank", kv_u32(dt_rank)),
        *_tokenizer_kvs(vocab),
        ("tokenizer.chat_template", kv_str(QWEN2_CHATML_TEMPLATE)),
    ]
    W = 0.15
    Q8, F32 = GGML_Q8_0, GGML_F32
    tensors = [TensorSpec("token_embd.weight", (n_embd, n_vocab), Q8, normal(0.05)),
               TensorSpec("output_norm.weight", (n_embd,), F32, ONES)]
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors += [
            TensorSpec(b + "attn_norm.weight", (n_embd,), F32, ONES),
            TensorSpec(b + "ssm_in.weight", (n_embd, 2 * d_inner), F32, normal(W)),
            TensorSpec(b + "ssm_conv1d.weight", (d_conv, d_inner), F32, normal(W)),
            TensorSpec(b + "ssm_conv1d.bias", (d_inner,), F32, normal(W)),
            TensorSpec(b + "ssm_x.weight", (d_inner, dt_rank + 2 * d_state), F32, normal(W)),
            TensorSpec(b + "ssm_dt.weight", (dt_rank, d_inner), F32, normal(W)),
            TensorSpec(b + "ssm_dt.bias", (d_inner,), F32, normal(W)),
            # A = -exp(A_log), stored negated as llama.cpp's converter does: a decaying state.
            TensorSpec(b + "ssm_a", (d_state, d_inner), F32, const(-1.0)),
            TensorSpec(b + "ssm_d", (d_inner,), F32, ONES),
            TensorSpec(b + "ssm_out.weight", (d_inner, n_embd), F32, normal(W)),
        ]
    write_gguf(out, kvs, tensors, seed, "tiny-mamba")


def build_tiny_embed(seed: int, out: Path) -> None:
    vocab = read_gguf_kv(VOCAB_DIR / "ggml-vocab-bert-bge.gguf")
    n_vocab = vocab["tokenizer.ggml.tokens"].count
    n_types = kv_scalar(vocab["tokenizer.ggml.token_type_count"])
    n_embd, n_layer, n_head, n_ff, n_ctx = 64, 2, 4, 128, 512
    A = "bert"
    kvs = [
        ("general.architecture", kv_str(A)),
        ("general.name", kv_str("jota-tiny-embed (random weights)")),
        ("general.file_type", kv_u32(1)),  # LLAMA_FTYPE_MOSTLY_F16
        (f"{A}.block_count", kv_u32(n_layer)),
        (f"{A}.context_length", kv_u32(n_ctx)),
        (f"{A}.embedding_length", kv_u32(n_embd)),
        (f"{A}.feed_forward_length", kv_u32(n_ff)),
        (f"{A}.attention.head_count", kv_u32(n_head)),
        (f"{A}.attention.layer_norm_epsilon", kv_f32(1e-12)),
        (f"{A}.attention.causal", kv_bool(False)),
        (f"{A}.pooling_type", kv_u32(2)),  # LLAMA_POOLING_TYPE_CLS, as bge
        *_tokenizer_kvs(vocab),
    ]
    # Strong enough that attention mixes the tokens into the CLS output: similar texts
    # get similar embeddings, different texts clearly different ones.
    W = 0.15
    F16, F32 = GGML_F16, GGML_F32
    tensors = [
        TensorSpec("token_embd.weight", (n_embd, n_vocab), F16, normal(0.5)),
        TensorSpec("token_types.weight", (n_embd, n_types), F32, normal(0.02)),
        TensorSpec("position_embd.weight", (n_embd, n_ctx), F32, normal(0.02)),
        TensorSpec("token_embd_norm.weight", (n_embd,), F32, ONES),
        TensorSpec("token_embd_norm.bias", (n_embd,), F32, ZEROS),
    ]
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors += [
            TensorSpec(b + "attn_q.weight", (n_embd, n_embd), F16, normal(W)),
            TensorSpec(b + "attn_q.bias", (n_embd,), F32, normal(W)),
            TensorSpec(b + "attn_k.weight", (n_embd, n_embd), F16, normal(W)),
            TensorSpec(b + "attn_k.bias", (n_embd,), F32, normal(W)),
            TensorSpec(b + "attn_v.weight", (n_embd, n_embd), F16, normal(W)),
            TensorSpec(b + "attn_v.bias", (n_embd,), F32, normal(W)),
            TensorSpec(b + "attn_output.weight", (n_embd, n_embd), F16, normal(W)),
            TensorSpec(b + "attn_output.bias", (n_embd,), F32, normal(W)),
            TensorSpec(b + "attn_output_norm.weight", (n_embd,), F32, ONES),
            TensorSpec(b + "attn_output_norm.bias", (n_embd,), F32, ZEROS),
            TensorSpec(b + "ffn_up.weight", (n_embd, n_ff), F16, normal(W)),
            TensorSpec(b + "ffn_up.bias", (n_ff,), F32, normal(W)),
            TensorSpec(b + "ffn_down.weight", (n_ff, n_embd), F16, normal(W)),
            TensorSpec(b + "ffn_down.bias", (n_embd,), F32, normal(W)),
            TensorSpec(b + "layer_output_norm.weight", (n_embd,), F32, ONES),
            TensorSpec(b + "layer_output_norm.bias", (n_embd,), F32, ZEROS),
        ]
    write_gguf(out, kvs, tensors, seed, "tiny-embed")


def build_bench_chat(seed: int, out: Path) -> None:
    vocab = read_gguf_kv(VOCAB_DIR / "ggml-vocab-gpt-2.gguf")
    # GPT-2's 50257 tokens + the two ChatML control tokens (as SmolLM2 has them), so the
    # chat template tokenizes to real special tokens and <|im_end|> ends a turn.
    tokens = kv_strings(vocab["tokenizer.ggml.tokens"]) + [b"<|im_start|>", b"<|im_end|>"]
    ttypes = np.frombuffer(vocab["tokenizer.ggml.token_type"].raw, dtype="<i4").tolist()
    ttypes += [TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL]
    n_vocab = len(tokens)
    im_end = n_vocab - 1
    eot = kv_scalar(vocab["tokenizer.ggml.eos_token_id"])  # <|endoftext|> 50256
    # SmolLM2-135M shapes
    n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx = 576, 30, 9, 3, 1536, 8192
    head_dim = n_embd // n_head
    n_gqa = head_dim * n_head_kv
    A = "llama"
    kvs = [
        ("general.architecture", kv_str(A)),
        ("general.name", kv_str("jota-bench-chat (random weights, SmolLM2-135M shapes)")),
        ("general.file_type", kv_u32(7)),  # LLAMA_FTYPE_MOSTLY_Q8_0
        ("general.quantization_version", kv_u32(2)),
        (f"{A}.vocab_size", kv_u32(n_vocab)),
        (f"{A}.block_count", kv_u32(n_layer)),
        (f"{A}.context_length", kv_u32(n_ctx)),
        (f"{A}.embedding_length", kv_u32(n_embd)),
        (f"{A}.feed_forward_length", kv_u32(n_ff)),
        (f"{A}.attention.head_count", kv_u32(n_head)),
        (f"{A}.attention.head_count_kv", kv_u32(n_head_kv)),
        (f"{A}.rope.freq_base", kv_f32(100000.0)),
        (f"{A}.rope.dimension_count", kv_u32(head_dim)),
        (f"{A}.attention.layer_norm_rms_epsilon", kv_f32(1e-5)),
        ("tokenizer.ggml.model", vocab["tokenizer.ggml.model"]),   # gpt2 (byte-level BPE)
        ("tokenizer.ggml.pre", vocab["tokenizer.ggml.pre"]),       # gpt-2
        ("tokenizer.ggml.tokens", kv_str_array(tokens)),
        ("tokenizer.ggml.token_type", kv_i32_array(ttypes)),
        ("tokenizer.ggml.merges", vocab["tokenizer.ggml.merges"]),
        ("tokenizer.ggml.bos_token_id", kv_u32(eot)),
        ("tokenizer.ggml.eos_token_id", kv_u32(im_end)),
        ("tokenizer.ggml.padding_token_id", kv_u32(eot)),
        ("tokenizer.ggml.add_bos_token", kv_bool(False)),
        ("tokenizer.chat_template", kv_str(CHATML_TEMPLATE)),
    ]
    W = 0.02
    Q8, F32 = GGML_Q8_0, GGML_F32
    tensors = [TensorSpec("token_embd.weight", (n_embd, n_vocab), Q8, normal(W)),  # tied: no output.weight
               TensorSpec("output_norm.weight", (n_embd,), F32, ONES)]
    for i in range(n_layer):
        b = f"blk.{i}."
        tensors += [
            TensorSpec(b + "attn_norm.weight", (n_embd,), F32, ONES),
            TensorSpec(b + "attn_q.weight", (n_embd, n_embd), Q8, normal(W)),
            TensorSpec(b + "attn_k.weight", (n_embd, n_gqa), Q8, normal(W)),
            TensorSpec(b + "attn_v.weight", (n_embd, n_gqa), Q8, normal(W)),
            TensorSpec(b + "attn_output.weight", (n_embd, n_embd), Q8, normal(W)),
            TensorSpec(b + "ffn_norm.weight", (n_embd,), F32, ONES),
            TensorSpec(b + "ffn_gate.weight", (n_embd, n_ff), Q8, normal(W)),
            TensorSpec(b + "ffn_up.weight", (n_embd, n_ff), Q8, normal(W)),
            TensorSpec(b + "ffn_down.weight", (n_ff, n_embd), Q8, normal(W)),
        ]
    write_gguf(out, kvs, tensors, seed, "bench-chat")


# --- whisper ------------------------------------------------------------------

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> unicode table (as in whisper's convert-pt-to-ggml.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def slaney_mel_filterbank(sr: int = 16000, n_fft: int = 400, n_mels: int = 80) -> np.ndarray:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels) (htk=False, norm='slaney'), float32.

    The only transcendental functions (log/exp of the Slaney mel scale) are evaluated
    with Python's `decimal`, whose ln()/exp() are correctly rounded, so the result is
    identical on every platform; the rest is IEEE +-*/ in float64.
    """
    ctx = decimal.Context(prec=50)
    D = decimal.Decimal
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel = 1000.0, 1000.0 / f_sp  # 15.0
    logstep_d = ctx.divide(ctx.ln(D("6.4")), D(27))

    def hz_to_mel(f: float) -> float:
        if f >= min_log_hz:
            return min_log_mel + float(ctx.divide(ctx.ln(ctx.divide(D(f), D(min_log_hz))), logstep_d))
        return f / f_sp

    def mel_to_hz(m: float) -> float:
        if m >= min_log_mel:
            return min_log_hz * float(ctx.exp(ctx.multiply(logstep_d, ctx.subtract(D(m), D(min_log_mel)))))
        return f_sp * m

    fmin, fmax = 0.0, sr / 2.0
    lo, hi = hz_to_mel(fmin), hz_to_mel(fmax)
    n_pts = n_mels + 2
    mels = [lo + i * ((hi - lo) / (n_pts - 1)) for i in range(n_pts)]  # np.linspace
    mels[-1] = hi
    mel_f = np.array([mel_to_hz(m) for m in mels], dtype=np.float64)
    fftfreqs = np.arange(1 + n_fft // 2, dtype=np.float64) * (sr / n_fft)  # exact (k*40.0)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels])
    weights = (weights.astype(np.float64) * enorm[:, None]).astype(np.float32)
    return np.where(weights > 0, weights, np.float32(0))  # no -0.0 (sign of zero from max/min is unspecified)


# Scales (std of the normal-ish values) of tiny-whisper.bin's random tensors.
WHISPER_SCALES = {
    "enc_pos": 0.1, "conv1": 0.1, "conv2": 0.05, "bias": 0.02, "enc_w": 0.05,
    "dec_w": 0.02, "dec_pos": 0.01, "tok_emb": 0.5,
}
# A decoder built from random values alone either echoes its input token or wanders
# (no timestamps / end-of-text), so whisper.cpp falls back through all temperatures
# (~10-25 s for jfk.wav on 2 cores) and prints little or nothing. So one structure is
# planted in the otherwise random decoder: a "token chain" in the MLP of decoder block
# 0. Hidden unit r detects the (random) embedding of token from_r and writes the
# embeddings of its successors into the residual stream, strongly enough to dominate
# everything else, so after <|startoftranscript|> the model decodes, whatever the audio
# or the previous-text context:
#     <|0.00|> w1 w2 ... wN <|2.00|> <|endoftext|>
# (w1..wN: N pseudo-random lowercase GPT-2 words picked from the seed). Each 2-s window
# yields one segment, confidently (no temperature fallback), in ~0.3 s per window. The
# links <|notimestamps|> -> w1 and the weaker second successors (SOT -> w1, wN -> EOT) keep
# it working with no_timestamps (and with timestamps suppressed by a logits filter).
WHISPER_CHAIN_WORDS = 6
WHISPER_CHAIN_TS_END = 50  # <|1.00|>: timestamps are in units of 20 ms
WHISPER_CHAIN_GAIN = 10.0   # norm of the successor vector per unit of detector output
WHISPER_CHAIN_BIAS = -10.0  # detector threshold (a match gives ~ +19.6, others ~N(0,1))


def _random_array(seed: int, model: str, name: str, n: int, std: float) -> np.ndarray:
    """The same values TensorSpec(name, ..., normal(std)) would stream, as one array."""
    return np.concatenate(list(normal(std).chunks(tensor_seed(seed, model, name), n)))


def _chain_words(seed: int, tokens: list[bytes], n: int) -> list[int]:
    """N distinct pseudo-random GPT-2 tokens of the form 'Ġ' + 3..8 lowercase letters."""
    cands = [i for i, t in enumerate(tokens)
             if t.startswith("Ġ".encode()) and 3 <= len(t) - 2 <= 8 and t[2:].isalpha() and t[2:].islower()]
    picks: list[int] = []
    k = 0
    while len(picks) < n:
        z = int(_splitmix64(k, 1, tensor_seed(seed, "tiny-whisper", "chain-words"))[0])
        k += 1
        tok = cands[z % len(cands)]
        if tok not in picks:
            picks.append(tok)
    return picks


def build_tiny_whisper(seed: int, out: Path, scales: dict | None = None) -> None:
    sc = dict(WHISPER_SCALES, **(scales or {}))
    M = "tiny-whisper"
    # tiny.en hyper-parameters
    n_vocab, n_audio_ctx, n_state, n_head, n_layer, n_text_ctx, n_mels = 51864, 1500, 384, 6, 4, 448, 80
    ff = 4 * n_state
    # GPT-2 byte-level vocabulary as raw bytes, exactly as convert-pt-to-ggml.py writes it
    # from gpt2.tiktoken: 50256 ranks (<|endoftext|> excluded; whisper.cpp adds the
    # specials itself up to n_vocab).
    vocab = read_gguf_kv(VOCAB_DIR / "ggml-vocab-gpt-2.gguf")
    gpt2_tokens = kv_strings(vocab["tokenizer.ggml.tokens"])
    byte_decoder = {c: b for b, c in _bytes_to_unicode().items()}
    words = [bytes(byte_decoder[c] for c in tok.decode("utf-8")) for tok in gpt2_tokens[:50256]]
    filters = slaney_mel_filterbank(16000, 400, n_mels)

    # --- the planted token chain (see WHISPER_SCALES' comment) ---
    eot, sot, notimestamps, ts0 = 50256, 50257, 50362, 50363  # whisper.cpp's ids for English-only models
    w = _chain_words(seed, gpt2_tokens, WHISPER_CHAIN_WORDS)
    # the prompt ends with SOT, or with <|notimestamps|> when timestamps are off
    links = [(sot, [(ts0, 1.0), (w[0], 0.5)]), (notimestamps, [(w[0], 1.0)]), (ts0, [(w[0], 1.0)])]
    links += [(w[i], [(w[i + 1], 1.0)]) for i in range(len(w) - 1)]
    links += [(w[-1], [(ts0 + WHISPER_CHAIN_TS_END, 1.0), (eot, 0.5)]), (ts0 + WHISPER_CHAIN_TS_END, [(eot, 1.0)])]
    s_emb = sc["tok_emb"]
    tok_emb = _random_array(seed, M, "decoder.token_embedding.weight", n_vocab * n_state, s_emb).reshape(n_vocab, n_state)
    unit = np.float32(1.0 / (s_emb * math.sqrt(n_state)))  # E[t] * unit has norm ~1
    W = sc["dec_w"]
    p0 = "decoder.blocks.0."
    mlp0_w = _random_array(seed, M, p0 + "mlp.0.weight", ff * n_state, W).reshape(ff, n_state)   # [hidden][in]
    mlp0_b = _random_array(seed, M, p0 + "mlp.0.bias", ff, sc["bias"])
    mlp2_w = _random_array(seed, M, p0 + "mlp.2.weight", n_state * ff, W).reshape(n_state, ff)   # [out][hidden]
    for r, (src, dsts) in enumerate(links):
        mlp0_w[r] = tok_emb[src] * unit
        mlp0_b[r] = np.float32(WHISPER_CHAIN_BIAS)
        col = np.zeros(n_state, dtype=np.float32)
        for dst, weight in dsts:
            col += tok_emb[dst] * np.float32(unit * WHISPER_CHAIN_GAIN * weight)
        mlp2_w[:, r] = col
    planted = {
        "decoder.token_embedding.weight": Init("array", tok_emb),
        p0 + "mlp.0.weight": Init("array", mlp0_w),
        p0 + "mlp.0.bias": Init("array", mlp0_b),
        p0 + "mlp.2.weight": Init("array", mlp2_w),
    }

    F16, F32 = GGML_F16, GGML_F32
    # (name, ne in ggml order, type, init) in the order of whisper_model_load
    T: list[TensorSpec] = [
        TensorSpec("encoder.positional_embedding", (n_state, n_audio_ctx), F32, normal(sc["enc_pos"])),
        TensorSpec("encoder.conv1.weight", (3, n_mels, n_state), F16, normal(sc["conv1"])),
        TensorSpec("encoder.conv1.bias", (1, n_state), F32, normal(sc["bias"])),
        TensorSpec("encoder.conv2.weight", (3, n_state, n_state), F16, normal(sc["conv2"])),
        TensorSpec("encoder.conv2.bias", (1, n_state), F32, normal(sc["bias"])),
        TensorSpec("encoder.ln_post.weight", (n_state,), F32, ONES),
        TensorSpec("encoder.ln_post.bias", (n_state,), F32, ZEROS),
    ]

    def block(p: str, cross: bool) -> list[TensorSpec]:
        W, B = sc["dec_w" if cross else "enc_w"], sc["bias"]
        specs = [
            TensorSpec(p + "mlp_ln.weight", (n_state,), F32, ONES),
            TensorSpec(p + "mlp_ln.bias", (n_state,), F32, ZEROS),
            TensorSpec(p + "mlp.0.weight", (n_state, ff), F16, normal(W)),
            TensorSpec(p + "mlp.0.bias", (ff,), F32, normal(B)),
            TensorSpec(p + "mlp.2.weight", (ff, n_state), F16, normal(W)),
            TensorSpec(p + "mlp.2.bias", (n_state,), F32, normal(B)),
        ]
        for a in (["attn", "cross_attn"] if cross else ["attn"]):
            specs += [
                TensorSpec(p + a + "_ln.weight", (n_state,), F32, ONES),
                TensorSpec(p + a + "_ln.bias", (n_state,), F32, ZEROS),
                TensorSpec(p + a + ".query.weight", (n_state, n_state), F16, normal(W)),
                TensorSpec(p + a + ".query.bias", (n_state,), F32, normal(B)),
                TensorSpec(p + a + ".key.weight", (n_state, n_state), F16, normal(W)),
                TensorSpec(p + a + ".value.weight", (n_state, n_state), F16, normal(W)),
                TensorSpec(p + a + ".value.bias", (n_state,), F32, normal(B)),
                TensorSpec(p + a + ".out.weight", (n_state, n_state), F16, normal(W)),
                TensorSpec(p + a + ".out.bias", (n_state,), F32, normal(B)),
            ]
        return specs

    for i in range(n_layer):
        T += block(f"encoder.blocks.{i}.", cross=False)
    T += [
        TensorSpec("decoder.positional_embedding", (n_state, n_text_ctx), F32, normal(sc["dec_pos"])),
        TensorSpec("decoder.token_embedding.weight", (n_state, n_vocab), F16, normal(s_emb)),
        TensorSpec("decoder.ln.weight", (n_state,), F32, ONES),
        TensorSpec("decoder.ln.bias", (n_state,), F32, ZEROS),
    ]
    for i in range(n_layer):
        T += block(f"decoder.blocks.{i}.", cross=True)
    for t in T:
        if t.name in planted:
            t.init = planted[t.name]

    with open(out, "wb") as fp:
        fp.write(struct.pack("<I", 0x67676D6C))  # GGML_FILE_MAGIC ("lmgg" on disk)
        fp.write(struct.pack("<11i", n_vocab, n_audio_ctx, n_state, n_head, n_layer,
                             n_text_ctx, n_state, n_head, n_layer, n_mels, 1))  # ftype 1 = f16
        fp.write(struct.pack("<ii", filters.shape[0], filters.shape[1]))
        fp.write(filters.astype("<f4").tobytes())
        fp.write(struct.pack("<i", len(words)))
        for wd in words:
            fp.write(struct.pack("<i", len(wd)) + wd)
        for t in T:
            name = t.name.encode()
            ftype = 1 if t.type == F16 else 0
            fp.write(struct.pack("<iii", len(t.ne), len(name), ftype))
            fp.write(struct.pack(f"<{len(t.ne)}i", *t.ne))
            fp.write(name)
            t.write_data(fp, seed, M)


MODELS = {
    "tiny-chat.gguf": build_tiny_chat,
    "tiny-embed.gguf": build_tiny_embed,
    "bench-chat.gguf": build_bench_chat,
    "tiny-whisper.bin": build_tiny_whisper,
    "tiny-mamba.gguf": build_tiny_mamba,
}

# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_checksums() -> dict:
    try:
        return json.loads(CHECKSUMS_FILE.read_text())
    except FileNotFoundError:
        return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS), metavar="NAME",
                    help="generate only these models (" + ", ".join(MODELS) + ")")
    ap.add_argument("--force", action="store_true", help="regenerate even if the files are present and valid")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"global seed (default {DEFAULT_SEED})")
    ap.add_argument("--update-checksums", action="store_true",
                    help=f"record the generated files' sha256 in {CHECKSUMS_FILE.relative_to(REPO_ROOT)}")
    args = ap.parse_args(argv)

    for f in ("ggml-vocab-qwen2.gguf", "ggml-vocab-bert-bge.gguf", "ggml-vocab-gpt-2.gguf"):
        if not (VOCAB_DIR / f).is_file():
            print(f"error: {VOCAB_DIR / f} not found (run scripts/fetch-sources.sh first)", file=sys.stderr)
            return 2

    sums = load_checksums()
    same_recipe = sums.get("generator_version") == GENERATOR_VERSION and sums.get("seed") == args.seed
    expected = {k: v["sha256"] for k, v in sums.get("models", {}).items()} if same_recipe else {}
    if not expected and not args.update_checksums:
        print(f"note: no checksums recorded for generator v{GENERATOR_VERSION} seed {args.seed}; "
              "files are generated but not verified")

    args.out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(MODELS)
    manifest_path = args.out / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (FileNotFoundError, ValueError):
        manifest = {}
    bad = []
    t_all = time.perf_counter()
    for name in names:
        path = args.out / name
        if path.is_file() and not args.force and name in expected:
            digest = sha256_file(path)
            if digest == expected[name]:
                size = path.stat().st_size
                print(f"present  {path}  {size} bytes  sha256 {digest}")
                manifest[name] = {"sha256": digest, "bytes": size}
                continue
        t0 = time.perf_counter()
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=args.out)
        os.close(fd)
        try:
            MODELS[name](args.seed, Path(tmp))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        digest, size = sha256_file(path), path.stat().st_size
        dt = time.perf_counter() - t0
        status = ""
        if name in expected and digest != expected[name]:
            status = f"  MISMATCH (expected {expected[name]})"
            bad.append(name)
        print(f"wrote    {path}  {size} bytes  sha256 {digest}  ({dt:.1f}s){status}")
        manifest[name] = {"sha256": digest, "bytes": size}

    manifest = {k: manifest[k] for k in MODELS if k in manifest}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"manifest {manifest_path}  (total {time.perf_counter() - t_all:.1f}s)")

    if args.update_checksums:
        models = dict(sums.get("models", {})) if same_recipe else {}
        models.update({k: manifest[k] for k in names})
        data = {
            "generator_version": GENERATOR_VERSION,
            "seed": args.seed,
            "models": {k: models[k] for k in MODELS if k in models},
        }
        CHECKSUMS_FILE.write_text(json.dumps(data, indent=2) + "\n")
        print(f"updated  {CHECKSUMS_FILE}")
        return 0
    if bad:
        print(f"error: generated files differ from {CHECKSUMS_FILE}: {', '.join(bad)} "
              "(generation is not deterministic here, or the generator changed without --update-checksums)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
