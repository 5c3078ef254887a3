"""The benchmark's outputs: machine description, markdown tables, targets, plot, BENCHMARKS.md section."""
from __future__ import annotations

import os
import platform
import re
import textwrap
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from loadtest.measure import Result

MARK_START = "<!-- bench:start -->"
MARK_END = "<!-- bench:end -->"
REFERENCE = "onnx-fp32-b1"
PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnxruntime", "tokenizers", "numpy",
            "tritonclient", "nvidia-pytriton")

PATH_NAMES = {"hf-pipeline": "HF pipeline (PyTorch)", "optimum-ort": "optimum ORT pipeline",
              "onnx": "ONNX Runtime (floor)", "served": "Triton ensemble"}

# (what, threshold) of the targets set for a 2-core machine
TARGETS = {"served_vs_floor": 0.95, "served_vs_hf": 5.0, "int8_floor_vs_fp32_floor": 1.8, "int8_f1_drop": 0.5,
           "p95_vs_floor": 1.3, "noop_client_ms": 1.5, "rss_growth_pct": 5.0}


def machine() -> dict:
    """CPU model, cores, memory, load and library versions of this machine."""
    info: dict = {"platform": platform.platform(), "python": platform.python_version(), "logical_cpus": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        cores = {(p, c) for p, c in re.findall(r"physical id\s*:\s*(\d+)[\s\S]*?core id\s*:\s*(\d+)", cpuinfo)}
        info["physical_cores"] = len(cores) or None
        flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo, re.M)
        info["avx512_vnni"] = bool(flags and "avx512_vnni" in flags.group(1).split())
    except OSError:
        info["cpu"] = platform.processor()
    try:
        mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        info["memory_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    except OSError:
        pass
    info["load_average"] = list(os.getloadavg())
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    info["versions"] = versions
    return info


def describe_machine(info: dict) -> str:
    v = info["versions"]
    load = lambda key: ", ".join(f"{x:.2f}" for x in info.get(key) or [])  # noqa: E731
    return (f"{info.get('cpu')}, {info.get('physical_cores') or '?'} cores / {info.get('logical_cpus')} logical CPUs"
            f"{' (AVX-512 VNNI)' if info.get('avx512_vnni') else ''}, {info.get('memory_gib')} GiB RAM, "
            f"{info.get('platform')}, Python {info.get('python')}; load average at start {load('load_average')}"
            + (f", at end {load('load_average_end')}" if info.get("load_average_end") else "")
            + f". Triton {info.get('triton', '?')} (nvidia-pytriton {v.get('nvidia-pytriton')}), "
            + ", ".join(f"{k} {v[k]}" for k in PACKAGES if k != "nvidia-pytriton") + ".")


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def _floor(results: dict[str, Result], precision: str, batch: int) -> Result | None:
    return results.get(f"onnx-{precision}-b{batch}")


def _calls(r: Result) -> str:
    """How a row was called: in-process calls, or protocol, users and (served) finer_model's layout."""
    if r.protocol == "in-process":
        return r.calls
    return f"{r.protocol}, {r.calls}" + (f", {r.layout}" if r.layout else "")


def main_table(results: dict[str, Result], agreements: dict[str, dict]) -> str:
    hf = results.get("hf-pipeline")
    lines = ["| path | precision | calls | sentences/s | p50 ms | p95 ms | p99 ms | x HF pipeline | x floor b1 | x floor b8 "
             "| agreement F1 vs ONNX fp32 | identical sentences |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in results.items():
        b1, b8 = _floor(results, r.precision, 1), _floor(results, r.precision, 8)
        ratio = lambda base: _fmt(r.rate / base.rate, 2) if base and base.rate else "–"  # noqa: E731
        a = agreements.get(key, {})
        calls = _calls(r)
        lines.append(f"| {PATH_NAMES[r.path]} | {r.precision} | {calls}{' (**%d errors**)' % r.errors if r.errors else ''} "
                     f"| {_fmt(r.rate)} | {_fmt(r.percentile(50))} | {_fmt(r.percentile(95))} | {_fmt(r.percentile(99))} "
                     f"| {ratio(hf)} | {ratio(b1)} | {ratio(b8)} | {_fmt(a.get('f1'), 3)} | {_fmt(a.get('identical_sentences'), 3)} |")
    return "\n".join(lines)


def agreement_table(results: dict[str, Result], agreements: dict[str, dict], same_precision: dict[str, dict],
                    gold: dict[str, dict]) -> str:
    lines = ["| path | precision | calls | entities | exact F1 vs ONNX fp32 | overlap F1 vs ONNX fp32 "
             "| exact F1 vs floor same precision | gold entity F1 (bench sentences) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for key, r in results.items():
        a, s, g = agreements.get(key, {}), same_precision.get(key, {}), gold.get(key, {})
        calls = _calls(r)
        lines.append(f"| {PATH_NAMES[r.path]} | {r.precision} | {calls} | {a.get('entities', '–')} | {_fmt(a.get('f1'), 3)} "
                     f"| {_fmt(a.get('overlap_f1'), 3)} | {_fmt(s.get('f1'), 3)} | {_fmt(g.get('f1'), 3)} |")
    return "\n".join(lines)


def profile_table(results: dict[str, Result]) -> str:
    """Where a served request's time goes, from Triton's own statistics (mean ms per request)."""
    lines = ["| served | client mean ms per request | ensemble (server) ms | preprocess ms | model queue ms | model compute ms "
             "| windows per model run | postprocess ms | outside the server ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results.values():
        if r.path != "served" or not r.server:
            continue
        s = r.server
        ens, pre, mod, post = (s.get(n, {}) for n in ("finer", "finer_preprocess", "finer_model", "finer_postprocess"))
        sent = r.sent_ms or r.latencies_ms  # a text without a number sends no request
        mean = sum(sent) / len(sent) if sent else float("nan")
        lines.append(f"| {r.label.removeprefix('Triton ')} | {_fmt(mean, 2)} "
                     f"| {_fmt(ens.get('total_ms'), 2)} | {_fmt(pre.get('total_ms'), 2)} | {_fmt(mod.get('queue_ms'), 2)} "
                     f"| {_fmt(mod.get('compute_ms'), 2)} | {_fmt(mod.get('windows_per_execution'), 2)} "
                     f"| {_fmt(post.get('total_ms'), 2)} | {_fmt(mean - ens.get('total_ms', float('nan')), 2)} |")
    return "\n".join(lines)


def rss_growth(samples: list) -> float | None:
    """Percent growth of a server's resident memory from its first load phase's end to its last's."""
    if len(samples) < 2 or not samples[0][1]:
        return None
    return 100 * (samples[-1][1] - samples[0][1]) / samples[0][1]


def targets(results: dict[str, Result], f1_gate: dict | None, rss: dict | None = None,
            trips: dict | None = None) -> list[dict]:
    """Each target with the measured figure, what it compares, and whether it is met."""
    out = []

    def best(path: str, precision: str) -> Result | None:
        rows = [r for r in results.values() if r.path == path and r.precision == precision and not r.errors]
        return max(rows, key=lambda r: r.rate, default=None)

    def add(what: str, value: float | None, threshold: float, detail: str, lower_is_better: bool = False):
        met = None if value is None else (value <= threshold if lower_is_better else value >= threshold)
        out.append({"target": what, "value": value, "threshold": threshold, "met": met, "detail": detail})

    if f1_gate:
        drop, (_, low, high) = f1_gate["drop_points"], f1_gate["int8_minus_fp32_points"]
        add(f"int8 entity micro-F1 drop <= {TARGETS['int8_f1_drop']} point", drop, TARGETS["int8_f1_drop"],
            f"export's gate, {f1_gate['sentences']} validation sentences: fp32 {f1_gate['f1']['fp32']:.4f}, "
            f"int8 {f1_gate['f1']['int8']:.4f}; paired 95% interval of the drop {-high:.2f} to {-low:.2f} points",
            lower_is_better=True)
    f8, f32 = best("onnx", "int8"), best("onnx", "fp32")
    if f8 and f32:
        add(f"int8 floor >= {TARGETS['int8_floor_vs_fp32_floor']}x fp32 floor", f8.rate / f32.rate,
            TARGETS["int8_floor_vs_fp32_floor"], f"{f8.label} {f8.rate:.1f}/s vs {f32.label} {f32.rate:.1f}/s")
    for precision in ("fp32", "int8"):
        s, f = best("served", precision), best("onnx", precision)
        if s and f:
            add(f"served {precision} >= {TARGETS['served_vs_floor']}x floor {precision}", s.rate / f.rate,
                TARGETS["served_vs_floor"], f"best served ({s.label}) {s.rate:.1f}/s vs best floor ({f.label}) {f.rate:.1f}/s")
    hf, s8 = results.get("hf-pipeline"), best("served", "int8")
    if s8 and hf:
        add(f"served int8 >= {TARGETS['served_vs_hf']}x HF pipeline", s8.rate / hf.rate, TARGETS["served_vs_hf"],
            f"{s8.label} {s8.rate:.1f}/s vs HF pipeline {hf.rate:.1f}/s")
    for r in results.values():
        floor = _floor(results, r.precision, 1)
        if r.path == "served" and r.users == 1 and floor and not r.errors:
            add(f"p95 {r.precision} {r.protocol}{' ' + r.layout if r.layout else ''}, 1 user <= "
                f"{TARGETS['p95_vs_floor']}x floor batch-1 p95", r.percentile(95) / floor.percentile(95),
                TARGETS["p95_vs_floor"], f"{r.percentile(95):.1f} ms vs {floor.percentile(95):.1f} ms", lower_is_better=True)
    for server, trip in (trips or {}).items():
        add(f"a request that does nothing ({server}) <= {TARGETS['noop_client_ms']:g} ms at the client",
            trip["client_ms"], TARGETS["noop_client_ms"],
            f"`finer_labels` over gRPC through the front door, mean of {trip['calls']} calls ({trip['server_ms']:.2f} ms "
            "of it in Triton)", lower_is_better=True)
    for server, samples in (rss or {}).items():
        growth = rss_growth(samples)
        if growth is not None:
            add(f"server memory ({server}) grows < {TARGETS['rss_growth_pct']:g}% over the load phases", growth,
                TARGETS["rss_growth_pct"], f"resident memory of all its processes {samples[0][1]:.0f} MiB after "
                f"{samples[0][0]} -> {samples[-1][1]:.0f} MiB after {samples[-1][0]} (percent)", lower_is_better=True)
    return out


def round_trip_note(trips: dict, results: dict[str, Result]) -> str:
    """The fixed cost of a Python step (the server's own `finer_labels`), next to the work the steps do."""
    if not trips:
        return ""
    work = []
    for precision in ("fp32", "int8"):
        floor = _floor(results, precision, 1)
        if floor and floor.server.get("forward_share") is not None and floor.entities:
            per = floor.seconds * 1000 / len(floor.entities)
            work.append(f"{precision} {per * (1 - floor.server['forward_share']):.2f} of {per:.2f} ms")
    parts = [f"{name}: {t['server_ms']:.2f} ms in Triton, {t['client_ms']:.2f} ms at the client"
             for name, t in trips.items()]
    return ("A Python step's fixed cost: `finer_labels`, which only returns the label list, called "
            f"{next(iter(trips.values()))['calls']} times over gRPC through the front door, one at a time, per server: "
            + "; ".join(parts) + ". Each served request crosses three such steps (preprocess, the ONNX Runtime "
            "shim of the embedded server, postprocess)"
            + (f", while the steps' own work (word splitting, tokenising, windows, decoding) takes, in process, "
               f"per sentence: {'; '.join(work)} (the floor at batch 1, less its ONNX Runtime time)." if work else "."))


def memory_table(rss: dict) -> str:
    """Resident memory of each server (launcher, tritonserver and stubs together) after each load phase."""
    phases = list(dict.fromkeys(p for samples in rss.values() for p, _ in samples))
    lines = ["| server | " + " | ".join(f"after {p} MiB" for p in phases) + " | growth |",
             "|---|" + "---:|" * (len(phases) + 1)]
    for server, samples in rss.items():
        by_phase = dict(samples)
        growth = rss_growth(samples)
        lines.append(f"| {server} | " + " | ".join(_fmt(by_phase.get(p), 0) for p in phases)
                     + f" | {_fmt(growth, 1)}% |")
    return "\n".join(lines)


def targets_table(rows: list[dict]) -> str:
    lines = ["| target | measured | met | compared |", "|---|---:|---|---|"]
    for t in rows:
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {_fmt(t['value'], 2)} | {met} | {t['detail']} |")
    return "\n".join(lines)


def plot(results: dict[str, Result], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"hf-pipeline": "#999999", "optimum-ort": "#c4a000", "onnx": "#3465a4", "served": "#4e9a06"}
    rows = list(results.values())
    names = [r.label if r.precision in r.label else f"{r.label} {r.precision}" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.38 * len(rows) + 1.8), sharey=True)
    y = range(len(rows))
    left.barh(y, [r.rate for r in rows], color=[colours.get(r.path, "#555") for r in rows])
    for i, r in enumerate(rows):
        left.text(r.rate, i, f" {r.rate:.0f}", va="center", fontsize=7)
    left.set_yticks(list(y), names, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("sentences/s (higher is better)")
    right.barh(y, [r.percentile(95) for r in rows], color=[colours.get(r.path, "#555") for r in rows], alpha=0.5,
               label="p95")
    right.barh(y, [r.percentile(50) for r in rows], color=[colours.get(r.path, "#555") for r in rows], label="p50")
    right.set_xlabel("latency per call, ms: p50 (dark), p95 (light)")
    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def update_benchmarks(path: Path, section: str, marks: tuple[str, str] = (MARK_START, MARK_END)) -> Path:
    """Replace the text between a tool's markers in BENCHMARKS.md (append the markers if missing)."""
    start, end = marks
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = f"{start}\n{section.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
