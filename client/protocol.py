"""What the blocking and asyncio clients share about talking to Triton: URLs, tensors, answers."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
from finer.labels import ScopeError, requested_types
from finer.serving import GRPC_RECONNECT

from client.errors import FinerError, InvalidInput, ServerOverloaded, retry_pause
from client.plan import Limits

PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
INPUT, OUTPUT = "TEXT", "ENTITIES"
LABELS_INPUT = "LABELS"  # optional: narrow the answer to scope names or FiNER types


def grpc_channel_args() -> list[tuple]:
    """tritonclient's own channel options (message sizes, keepalive) with GRPC_RECONNECT."""
    from tritonclient.grpc import KeepAliveOptions
    from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE

    keepalive = KeepAliveOptions()
    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            *GRPC_RECONNECT]


class Health(NamedTuple):
    live: bool  # the server answers
    ready: bool  # the model is loaded and takes requests


@dataclass(frozen=True)
class Metadata:
    model: str
    version: str  # the ensemble's version served
    steps: dict  # each ensemble step's model name -> served version (finer_model's is the exported model)
    max_documents: int
    max_windows: int
    # Tags the served model can return (from the `finer_labels` model); None if the repository has none.
    labels: list | None
    # The served version's MODEL_CARD.md (Markdown, from `finer_labels`); "" where the version has none.
    model_card: str = ""


def check_settings(url: str | None, protocol: str, timeout: float, retries: int, concurrency: int) -> str:
    """The URL as tritonclient wants it (host:port, no scheme); InvalidInput for bad settings."""
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol must be 'grpc' or 'http', not {protocol!r}")
    if not timeout or timeout <= 0:
        raise InvalidInput(f"timeout must be > 0 seconds, not {timeout!r}")
    if retries < 0 or concurrency < 1:
        raise InvalidInput(f"need retries >= 0 and concurrency >= 1, not {retries} and {concurrency}")
    url = url or f"127.0.0.1:{DEFAULT_PORTS[protocol]}"
    for scheme in ("http://", "grpc://"):
        url = url.removeprefix(scheme)
    if url.startswith("https://"):
        raise InvalidInput("https is not supported by this client: use a plain host:port URL")
    return url.rstrip("/")


class ClientSettings:
    """What both clients are configured with; `aio` picks tritonclient's asyncio module."""

    _aio = False

    def __init__(self, url: str | None = None, protocol: str = "grpc", model: str = "finer", model_version: str = "",
                 timeout: float = 30.0, retries: int = 3, concurrency: int = 4, on_overload=None):
        self.url = check_settings(url, protocol, timeout, retries, concurrency)
        self.protocol, self.model, self.model_version = protocol, model, model_version
        self.on_overload = on_overload  # called with each refusal for load (ServerOverloaded), before the retry
        self.timeout, self.retries, self.concurrency = float(timeout), retries, concurrency
        self._module = importlib.import_module(f"tritonclient.{protocol}{'.aio' if self._aio else ''}")
        self._limits: Limits | None = None
        self._closed = False

    def _pause_after(self, error: FinerError, tally: dict) -> float | None:
        """Seconds to wait before sending again after `error` (None: raise it); `tally` counts this
        request's failed connections ("attempts") and refusals for load ("refusals")."""
        refused = isinstance(error, ServerOverloaded)
        tally["refusals" if refused else "attempts"] += 1
        if refused and self.on_overload is not None:
            self.on_overload(error)
        return retry_pause(error, tally["attempts"], tally["refusals"], self.retries)


def _strings(module, name: str, values: list[str]):
    inp = module.InferInput(name, [len(values)], "BYTES")
    inp.set_data_from_numpy(np.array([v.encode("utf-8") for v in values], dtype=np.object_))
    return inp


def label_list(labels: str | Sequence[str] | None) -> list[str] | None:
    """`tag(labels=...)` as the LABELS the server takes: None (every type), or scope names ('debt',
    'all') and FiNER types; InvalidInput names an unknown one before anything is sent."""
    if labels is None:
        return None
    specs = [labels] if isinstance(labels, str) else list(labels)
    try:
        requested_types(specs)
    except ScopeError as e:
        raise InvalidInput(f"labels: {e}") from None
    return specs


def request_inputs(module, texts: list[str], labels: list[str] | None) -> list:
    """TEXT (one UTF-8 element per document) and, when narrowed, the optional LABELS."""
    inputs = [_strings(module, INPUT, texts)]
    if labels is not None:
        inputs.append(_strings(module, LABELS_INPUT, labels))
    return inputs


def entities_payloads(result) -> list:
    return result.as_numpy(OUTPUT).reshape(-1).tolist()


def config_json(answer, protocol: str) -> dict:
    """The model config as a dict: gRPC's `as_json=True` wraps it in {"config": ...}."""
    return answer.get("config", answer) if protocol == "grpc" else answer


LABELS_MODEL = "finer_labels"  # answers, with no inputs, the label list of the served finer_model


def published(result) -> tuple[list[str], str]:
    """The labels and the model card `finer_labels` answers (a repository older than the card: no card)."""
    labels = [t.decode("utf-8") for t in result.as_numpy("LABELS").reshape(-1)]
    card = result.as_numpy("MODEL_CARD")
    return labels, card.reshape(-1)[0].decode("utf-8") if card is not None and card.size else ""


def metadata_from(model: str, config: dict, model_meta: dict, steps: dict, labels: list | None,
                  card: str = "") -> Metadata:
    limits = Limits.from_config(config)
    return Metadata(model, str((model_meta.get("versions") or [""])[-1]), steps, limits.max_documents,
                    limits.max_windows, labels, card)


def step_names(config: dict) -> list[str]:
    return [s["model_name"] for s in (config.get("ensemble_scheduling") or {}).get("step", [])]
