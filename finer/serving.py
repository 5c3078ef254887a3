"""The serving specification: every setting that the Triton configs, the Python steps, export and
the client must agree on, in one place.

`export.triton_configs` generates every config.pbtxt of the model repository from a
`ServingSpec`; the Python steps read their values from those configs; the ensemble publishes the
limits and the window settings as parameters, and the client reads them from there. Nothing else
holds a copy.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

DEVICES = ("cpu", "gpu")
# Window lengths that padding may round up to (the model's own max_length is always the last).
# Chosen with `python -m loadtest.padding` on the corpus's sentences: against 32/64/128, the
# half-steps cut the padded share of positions from 30% to 19% for one sentence per request and
# from 46% to 36% for client-packed requests (BENCHMARKS.md).
BUCKET_STEPS = (32, 48, 64, 96, 128, 192, 256, 384, 512)

# Request errors of the Python steps start with one of these codes in brackets, e.g.
# "[too_big] document TEXT[0] is too long ...", so clients act on the code, not on the wording.
ERROR_TOO_BIG = "too_big"  # the request needs more windows or documents than one request may hold
ERROR_BAD_TEXT = "bad_text"  # TEXT is not UTF-8
ERROR_BAD_LABELS = "bad_labels"  # LABELS names an unknown scope or type
ERROR_BAD_INPUT = "bad_input"  # a tensor sent straight to a step does not fit its contract
ERROR_OVERLOADED = "overloaded"  # the front door admits no more work now: retry after the hint (server/admission.py)

# UTF-8's longest code point: the client bounds a request at one sub-token per character, so a
# request within max_windows windows never holds more than max_windows * max_length * 4 bytes.
MAX_UTF8_BYTES = 4
# A body carries TEXT as JSON (escapes at most double UTF-8's bytes; \u00XX for control characters
# is 6 per byte, but those are rare) or as raw bytes with a small header.
BODY_PER_TEXT_BYTE = 8
# gRPC waits up to 120 s between reconnect attempts by default; at most 0.5 s for the client and the
# front door, so a restarted server is used within about a second of being ready. (The minimum
# stays: gRPC also uses it as the time one connection attempt may take.)
GRPC_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]


def coded(code: str, message: str) -> str:
    return f"[{code}] {message}"


def has_code(message: str, code: str) -> bool:
    return f"[{code}]" in message


def buckets_for(max_length: int) -> list[int]:
    """Padding lengths for windows of at most `max_length` sub-tokens."""
    return [b for b in BUCKET_STEPS if b < max_length] + [max_length]


@dataclass(frozen=True)
class ServingSpec:
    max_length: int = 128  # sub-tokens per window, [CLS] and [SEP] included
    stride: int = 32  # sub-tokens shared by consecutive windows of a long document
    max_documents: int = 64  # documents per request
    max_windows: int = 64  # windows per request = finer_model's max_batch_size
    device: str = "cpu"  # where finer_model runs: cpu | gpu (the Python steps run on the CPU)
    # CPU: two single-threaded instances serve 6-16% more sentences/s at 16 users than two instances
    # of two threads, whose one user waits less (p95 1.1-1.3x the in-process floor against 1.5-1.9x)
    # (`make bench`, BENCHMARKS.md). A server is for many users; int8 is what it serves.
    model_instances: int = 2  # finer_model instances
    step_instances: int = 1  # instances of each Python step
    intra_op_threads: int = 1  # ONNX Runtime threads per operator, per instance (CPU)
    inter_op_threads: int = 1
    # Idle intra-op threads that spin hold a core the Python steps and the other instance need
    # (2x2 on 2 cores: 0.6-0.8x the sentences/s and twice the one-user p95 with spinning). The
    # embedded server's backend honours it; the official container's native backend ignores it.
    spinning: bool = False
    queue_delay_us: int = 100  # dynamic batcher wait for batch mates

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {self.device!r}")
        if not 0 <= self.stride < self.max_length - 2:
            raise ValueError(f"stride {self.stride} must be at least 0 and below max_length - 2 ({self.max_length - 2})")
        if min(self.max_documents, self.max_windows, self.model_instances, self.step_instances) < 1:
            raise ValueError("limits and instance counts must be at least 1")

    @property
    def max_text_bytes(self) -> int:
        """UTF-8 bytes of TEXT one request may hold: refused before tokenising above this."""
        return self.max_windows * self.max_length * MAX_UTF8_BYTES

    @property
    def max_body_bytes(self) -> int:
        """The largest HTTP body / gRPC message the front door passes on to Triton."""
        return self.max_text_bytes * BODY_PER_TEXT_BYTE

    @property
    def buckets(self) -> list[int]:
        return buckets_for(self.max_length)

    def for_device(self, device: str) -> "ServingSpec":
        """The same windows and limits on another device; a GPU gains from batching, so it runs two
        instances (copies overlap compute) and waits a little longer for batch mates."""
        if device == "gpu":
            return replace(self, device="gpu", model_instances=2, queue_delay_us=2000)
        return replace(self, device=device)
