"""The measured paths of the benchmark: each turns the same texts into entities and is timed per call.

An entity is compared as (start, end, label): character offsets into the text and the FiNER type
without its B-/I- prefix, which is what both `finer.spans.Entity` and the Hugging Face pipeline's
aggregated `entity_group` give.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from finer.words import may_hold_entity

from client import FinerError
from client.aio import AsyncFinerClient

Spans = frozenset  # of (start, end, label)


@dataclass
class Result:
    """One measured row: which path, how it was called, and what came out."""

    key: str  # stable id, e.g. "served-fp32-grpc-4"
    path: str  # "hf-pipeline", "optimum-ort", "onnx", "served"
    label: str  # for tables and plots
    precision: str  # fp32 | int8
    calls: str  # "1 sentence per call", "batch 8 (length-sorted)", "4 users"
    protocol: str = "in-process"
    users: int = 1
    batch: int = 1
    seconds: float = 0.0  # wall time for all sentences
    latencies_ms: list[float] = field(default_factory=list)  # one per call
    entities: list = field(default_factory=list)  # Spans per sentence, in input order
    errors: int = 0
    error: str = ""
    server: dict = field(default_factory=dict)  # per-model time from Triton's statistics
    layout: str = ""  # served: finer_model instances x ONNX Runtime threads, e.g. "1x2"
    sent_ms: list[float] = field(default_factory=list)  # served: the calls that sent a request (a text with a number)

    @property
    def rate(self) -> float:
        return len(self.entities) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def spans_of(entities) -> Spans:
    """Entities as dicts or `finer.spans.Entity` -> the comparable set."""
    out = set()
    for e in entities:
        e = e if isinstance(e, dict) else e.to_dict()
        out.add((int(e["start"]), int(e["end"]), e.get("label") or e.get("entity_group")))
    return frozenset(out)


def _warm(fn: Callable, texts: list[str], warmup: int) -> None:
    for text in texts[:warmup]:
        fn(text)


def one_at_a_time(key: str, path: str, label: str, precision: str, fn: Callable[[str], Spans], texts: list[str],
                  warmup: int) -> Result:
    """`fn` on one text per call, in corpus order."""
    _warm(fn, texts, warmup)
    result = Result(key, path, label, precision, "1 sentence per call")
    started = time.perf_counter()
    for text in tqdm(texts, desc=label, unit="sent", leave=False):
        t0 = time.perf_counter()
        result.entities.append(fn(text))
        result.latencies_ms.append((time.perf_counter() - t0) * 1000)
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------ Hugging Face pipelines


def _tokenizer(model_dir: Path, accepted: set[str]):
    """The model folder's tokenizer, asked only for inputs the model takes (a BERT tokenizer saved beside a
    DistilBERT model would otherwise send token_type_ids)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.model_input_names = [n for n in tokenizer.model_input_names if n in accepted]
    return tokenizer


def hf_pipeline(model_dir: Path, aggregation: str):
    """transformers' token-classification pipeline in PyTorch fp32, as a user would build it."""
    import inspect

    from transformers import AutoModelForTokenClassification, pipeline

    model = AutoModelForTokenClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = _tokenizer(model_dir, set(inspect.signature(model.forward).parameters))
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=aggregation, device=-1)
    return lambda text: spans_of(tagger(text))


def optimum_pipeline(model_dir: Path, aggregation: str):
    """optimum's ONNX Runtime model (exported from the same folder on load) in the same pipeline."""
    from optimum.onnxruntime import ORTModelForTokenClassification, pipeline

    model = ORTModelForTokenClassification.from_pretrained(str(model_dir), export=True)
    tokenizer = _tokenizer(model_dir, set(model.input_names))
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=aggregation)
    return lambda text: spans_of(tagger(text))


# ------------------------------------------------------------------ the floor: ONNX Runtime + finer.pipeline


class Floor:
    """finer.pipeline.encode -> ONNX Runtime -> finer.pipeline.decode in this process: the work any
    served path must do, without serving. Session options as finer_model's config.pbtxt sets them."""

    def __init__(self, version: Path, intra_op: int, inter_op: int):
        from finer.pipeline import Tagger

        self.tagger = Tagger.from_version(version, intra_op, inter_op)
        self.tokenizer, run = self.tagger.tokenizer, self.tagger.logits_fn
        self.forward_s = 0.0

        def timed(input_ids, attention_mask):  # the model's share of the floor's time
            t0 = time.perf_counter()
            try:
                return run(input_ids, attention_mask)
            finally:
                self.forward_s += time.perf_counter() - t0

        self.tagger.logits_fn = timed

    def __call__(self, texts: list[str]) -> list[Spans]:
        return [spans_of(doc) for doc in self.tagger.entities(texts)]

    def measure(self, key: str, precision: str, texts: list[str], batch: int, warmup: int) -> Result:
        """Length-sorted batches of `batch` texts (batch 1 = one text per call); entities in input order."""
        tokens = [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        order = sorted(range(len(texts)), key=lambda i: tokens[i])
        for i in range(min(warmup, len(texts))):
            self([texts[i]])
        calls = "1 sentence per call" if batch == 1 else f"batch {batch}, length-sorted"
        result = Result(key, "onnx", f"ONNX Runtime {precision}, {calls}", precision, calls, batch=batch)
        found: list = [None] * len(texts)
        self.forward_s = 0.0
        started = time.perf_counter()
        for i in tqdm(range(0, len(order), batch), desc=result.label, unit="call", leave=False):
            idx = order[i : i + batch]
            t0 = time.perf_counter()
            for j, spans in zip(idx, self([texts[j] for j in idx])):
                found[j] = spans
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
        result.seconds = time.perf_counter() - started
        result.entities = found
        result.server = {"forward_share": self.forward_s / result.seconds}
        return result


# ------------------------------------------------------------------ served: the Triton ensemble


async def _drive(server, protocol: str, texts: list[str], users: int, model: str, bar) -> tuple[float, list, list, list, list]:
    """`users` concurrent closed-loop users, each tagging one text per `AsyncFinerClient.tag()` call (the
    product's client: a text without a number costs it no request) until all are tagged."""
    queue = itertools.count()
    entities: list = [None] * len(texts)
    sends = [may_hold_entity(t) for t in texts]  # the calls that send a request (the client's own rule)
    latencies: list = []
    sent: list = []
    errors: list[str] = []

    async def user():
        url = server.grpc_url if protocol == "grpc" else f"{server.http_address}:{server.http_port}"
        async with AsyncFinerClient(url, protocol, model=model, timeout=120) as client:
            await client.limits()  # the one config call a long-lived client makes
            while (i := next(queue)) < len(texts):
                t0 = time.perf_counter()
                try:
                    entities[i] = spans_of(await client.tag(texts[i]))
                except FinerError as e:  # counted and reported, the run goes on
                    errors.append(f"{type(e).__name__}: {e}"[:200])
                    entities[i] = frozenset()
                latencies.append((time.perf_counter() - t0) * 1000)
                if sends[i]:
                    sent.append(latencies[-1])
                bar.update()

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(users)))
    return time.perf_counter() - started, entities, latencies, sent, errors


def model_stats(server) -> dict:
    """Triton's cumulative statistics per model: counts and nanoseconds."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"{server.http_address}:{server.http_port}")
    try:
        stats = client.get_inference_statistics()
    finally:
        client.close()
    out = {}
    for m in stats["model_stats"]:
        s = m["inference_stats"]
        out[m["name"]] = {"inferences": int(m.get("inference_count", 0)), "executions": int(m.get("execution_count", 0)),
                          **{k: int(s[k]["ns"]) for k in ("success", "queue", "compute_input", "compute_infer", "compute_output")},
                          "requests": int(s["success"]["count"])}
    return out


def stats_delta(before: dict, after: dict) -> dict:
    """Per model over one measurement: mean ms per request of queue, compute and end-to-end (success),
    and for batched models the mean batch (windows per execution)."""
    out = {}
    for name, a in after.items():
        b = before.get(name, {})
        d = {k: a[k] - b.get(k, 0) for k in a}
        if not d["requests"]:
            continue
        per = 1e-6 / d["requests"]
        out[name] = {"requests": d["requests"], "executions": d["executions"],
                     "queue_ms": d["queue"] * per, "compute_ms": (d["compute_input"] + d["compute_infer"] + d["compute_output"]) * per,
                     "total_ms": d["success"] * per,
                     "windows_per_execution": d["inferences"] / d["executions"] if d["executions"] else 0.0}
    return out


def served(server, precision: str, protocol: str, users: int, texts: list[str], warmup: int, model: str = "finer",
           layout: str = "", layout_in_key: bool = False) -> Result:
    """The ensemble over `protocol` at `users` concurrent users, one sentence per tag() call; `layout` (instances x
    threads of finer_model) is shown in the label, and in the key too when a bench compares layouts."""
    if warmup:
        asyncio.run(_drive(server, protocol, texts[:warmup], min(users, warmup), model, tqdm(disable=True)))
    before = model_stats(server)
    label = f"Triton {precision}, {protocol}, {users} user{'s' if users > 1 else ''}" + (f", {layout}" if layout else "")
    with tqdm(total=len(texts), desc=label, unit="sent", leave=False) as bar:
        seconds, entities, latencies, sent, errors = asyncio.run(_drive(server, protocol, texts, users, model, bar))
    result = Result(f"served-{precision}-{protocol}-{users}" + (f"-{layout}" if layout_in_key else ""), "served", label, precision,
                    f"{users} user{'s' if users > 1 else ''}, 1 sentence per tag() call", protocol, users=users,
                    seconds=seconds, latencies_ms=latencies, entities=entities, errors=len(errors),
                    error=errors[0] if errors else "", layout=layout, sent_ms=sent)
    result.server = stats_delta(before, model_stats(server))
    return result


def stub_round_trip(server, calls: int = 200) -> dict:
    """The fixed cost of one Python-backend step: `finer_labels` (it only returns the label list) called over
    gRPC through the front door, one at a time; client and Triton-side milliseconds per call."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for _ in range(10):
            client.infer("finer_labels", [])
        before = model_stats(server)
        started = time.perf_counter()
        for _ in range(calls):
            client.infer("finer_labels", [])
        client_ms = (time.perf_counter() - started) * 1000 / calls
        server_side = stats_delta(before, model_stats(server))["finer_labels"]
    finally:
        client.close()
    return {"calls": calls, "client_ms": client_ms, "server_ms": server_side["total_ms"],
            "compute_ms": server_side["compute_ms"]}
