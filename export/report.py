"""What `python -m export.build` prints after writing: one block per version with its figures."""
from __future__ import annotations

from pathlib import Path


def summary(report: dict) -> str:
    """A short table of what was written and the figures."""
    lines = []
    for folder, info in report.items():
        f = Path(folder)
        files = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" if p.stat().st_size > 1e5 else p.name
                          for p in sorted(f.iterdir()))
        par = info["parity"]
        lines += [f"{folder}  ({info['precision']}, from {info['source']['model']})",
                  f"  files         {files}",
                  f"  exporter      {info['exporter']}",
                  f"  parity        max |logit diff| vs PyTorch: export {par['export']['max_abs_diff']:.1e}, "
                  f"optimised {par['optimised']['max_abs_diff']:.1e} (gate {par['tolerance']:g}; "
                  f"{par['export']['sentences']} sentences, {par['export']['windows']} windows)",
                  f"  optimisation  {info['optimisation']['method']}: "
                  + (", ".join(f"{k} {v}" for k, v in info["optimisation"]["fused"].items()) or "no fusions")]
        q = info.get("quantisation")
        if q and "gate" in q:
            g = q["gate"]
            lines.append(f"  int8 gate     entity micro-F1 fp32 {g['f1']['fp32']:.4f} / int8 {g['f1']['int8']:.4f}, "
                         f"drop {g['drop_points']:.2f} points (paired 95% interval "
                         f"{-g['int8_minus_fp32_points'][2]:.2f} to {-g['int8_minus_fp32_points'][1]:.2f}; "
                         f"max {g['max_drop_points']:g}), {g['speedup']:.2f}x fp32's speed: "
                         f"{'passed' if g['passed'] else 'FAILED, fp32 written'}; "
                         f"per-channel {q['per_channel']}, embeddings {q['embeddings']}, "
                         f"{len(q.get('fp32_nodes', []))} nodes kept fp32"
                         + (f"; int8 max |logit diff| {par['int8']['max_abs_diff']:.1e}, "
                            f"argmax agreement {par['int8']['argmax_agreement']:.3f}" if "int8" in par else ""))
        if info.get("promotion"):
            lines.append(f"  promotion     {info['promotion']['verdict']}")
        t = info["timings_s"]
        lines.append("  time          " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in t.items()))
    return "\n".join(lines)
