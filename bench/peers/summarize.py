#!/usr/bin/env python3
"""Summarize a bench/peers results directory into a markdown table (stdlib only).

    python3 summarize.py RESULTS_DIR [--out FILE.md] [--chart FILE.svg]

Reads every RESULTS_DIR/*.json written by `sockhub bench --json` (the peer is the `label`),
groups by scenario parameters, and prints per scenario and peer the median over rounds of the
headline figure (msgs or deliveries per server CPU-second; RSS KB per idle connection), latency
p99, and the ratio to the best peer other than sockhub; with --out or --chart it also draws an
SVG chart (hand-written, no dependency) of throughput per server CPU-second and latency p99 per
peer, and idle RSS per connection.
"""
import argparse
import glob
import json
import os
import statistics
import sys

PEER_ORDER = ["sockhub", "tungstenite", "fastwebsockets", "node-ws", "python-websockets", "floor"]
# References, not peers: shown, but never the "best peer" of a ratio.
REFERENCES = {"floor"}


def key_of(d):
    p = d.get("parameters", {})
    sc = d.get("scenario")
    if sc == "echo":
        size = p.get("size")
        sz = f"{size // 1024} KB" if size and size >= 1024 and size % 1024 == 0 else f"{size} B"
        return (0, p.get("in_flight"), size), f"echo {p.get('connections')} conns × {p.get('in_flight')} in flight × {sz}"
    if sc == "broadcast":
        return (1, p.get("rate"), p.get("size")), f"broadcast {p.get('subscribers')} subs × {p.get('rate')} msg/s × {p.get('size')} B"
    if sc == "idle":
        return (2, p.get("connections"), 0), f"idle {p.get('connections'):,} conns"
    return (9, 0, 0), str(sc)


def read_perf(path, d):
    """Server syscalls per message from a `perf stat -x,` file next to the JSON (None if absent).

    perf counted for the whole life of the generator run (connect and warm-up included), so the
    count is divided by every message the generator received, warm-up included."""
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(",")
        if len(parts) > 2 and parts[2].startswith("raw_syscalls:sys_enter") and parts[0].isdigit():
            total = (d.get("counts") or {}).get("received_total")
            return int(parts[0]) / total if total else None
    return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_si(v):
    if v is None:
        return "—"
    for div, suf in ((1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.3g}"


def fmt_ms(us):
    return "—" if us is None else (f"{us / 1000:.2f} ms" if us < 10_000 else f"{us / 1000:.0f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--out")
    ap.add_argument("--chart", help="SVG chart path (default: --out with .svg)")
    a = ap.parse_args()

    groups = {}  # key -> (title, {peer: [docs]})
    for f in sorted(glob.glob(os.path.join(a.dir, "*.json"))):
        try:
            d = json.load(open(f))
        except (OSError, ValueError) as e:
            print(f"skipping {f}: {e}", file=sys.stderr)
            continue
        d["_syscalls"] = read_perf(f[:-len(".json")] + ".perf", d)
        k, title = key_of(d)
        groups.setdefault(k, (title, {}))[1].setdefault(d.get("label") or "?", []).append(d)

    peers_seen = sorted({p for _, (_, ps) in groups.items() for p in ps},
                        key=lambda p: (PEER_ORDER.index(p) if p in PEER_ORDER else 99, p))
    lines = []
    meta = os.path.join(a.dir, "meta.txt")
    if os.path.exists(meta):
        lines += ["```", open(meta).read().rstrip(), "```", ""]
    lines += [
        "Medians over rounds. **per CPU-s** = messages (echo) or deliveries (broadcast) per server "
        "CPU-second, higher is better; for idle, RSS KB per connection, lower is better. "
        "**ratio** = this peer ÷ the best peer other than sockhub (and the `floor` reference) on the same line "
        "(throughput: > 1 means better than the best peer; idle RSS: < 1 means less memory).",
        "",
        "| scenario | peer | runs | per CPU-s | ratio to best peer | wall rate | p50 | p99 | p99 ratio | delivered / alive | server CPU % | other CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    with_sys = any(d.get("_syscalls") is not None for _, ps in groups.values() for ds in ps.values() for d in ds)
    if with_sys:
        lines[-2] += " syscalls/msg |"
        lines[-1] += "---|"
    chart = []  # (title, peer, headline, p99)
    for k in sorted(groups):
        title, ps = groups[k]
        idle = k[0] == 2
        rows = {}
        for peer in peers_seen:
            docs = ps.get(peer, [])
            if not docs:
                continue
            if idle:
                head = med([d.get("rates", {}).get("server_rss_kb_per_conn") for d in docs])
            else:
                head = med([d.get("per_server_cpu_s") for d in docs])
            lat = [d.get("latency_us") or {} for d in docs]
            rates = [d.get("rates", {}) for d in docs]
            wall = med([r.get("msgs_per_s", r.get("deliveries_per_s", r.get("connects_per_s"))) for r in rates])
            frac = med([r.get("delivered_fraction", r.get("liveness")) for r in rates])
            cpu_pct = med([100 * d["server_cpu_s"] / d["duration_s"] if d.get("server_cpu_s") is not None and d.get("duration_s") else None for d in docs])
            rows[peer] = dict(n=len(docs), head=head, wall=wall, frac=frac, cpu=cpu_pct,
                              p50=med([l.get("p50") for l in lat]), p99=med([l.get("p99") for l in lat]),
                              other=med([d.get("other_cpu_s") for d in docs]),
                              sys=med([d.get("_syscalls") for d in docs]))
        others = {p: r for p, r in rows.items()
                  if p != "sockhub" and p not in REFERENCES and r["head"] is not None}
        best = (min if idle else max)((r["head"] for r in others.values()), default=None)
        best_p99 = min((r["p99"] for r in others.values() if r["p99"] is not None), default=None)
        for peer, r in rows.items():
            ratio = f"{r['head'] / best:.2f}×" if best and r["head"] is not None else "—"
            p99r = f"{r['p99'] / best_p99:.2f}×" if best_p99 and r["p99"] is not None else "—"
            head = "—" if r["head"] is None else (f"{r['head']:.2f} KB" if idle else fmt_si(r["head"]))
            frac = "—" if r["frac"] is None else f"{100 * r['frac']:.1f} %"
            cpu = "—" if r["cpu"] is None else f"{r['cpu']:.0f}"
            other = "—" if r["other"] is None else f"{r['other']:.2f}"
            lines.append(f"| {title} | {peer} | {r['n']} | {head} | {ratio} | {fmt_si(r['wall'])}/s | "
                         f"{fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {p99r} | {frac} | {cpu} | {other} |"
                         + ((" — |" if r["sys"] is None else f" {r['sys']:.3f} |") if with_sys else ""))
            chart.append((title, peer, r["head"], r["p99"]))
        missing = [p for p in peers_seen if p not in rows]
        for p in missing:
            lines.append(f"| {title} | {p} | 0 | — | — | — | — | — | — | — | — | — |" + (" — |" if with_sys else ""))
    fails = os.path.join(a.dir, "failures.log")
    if os.path.exists(fails) and os.path.getsize(fails):
        lines += ["", "Failures:", "", "```", open(fails).read().rstrip(), "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.chart or a.out:
        draw(chart, a.chart or os.path.splitext(a.out)[0] + ".svg")


PEER_COLORS = {
    "sockhub": "#d62728", "tungstenite": "#1f77b4", "fastwebsockets": "#2ca02c",
    "node-ws": "#9467bd", "python-websockets": "#ff7f0e", "floor": "#7f7f7f",
}


def esc(t):
    return str(t).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def draw(chart, path):
    """A hand-written SVG (no dependency): per scenario and peer, throughput per server
    CPU-second and latency p99 as horizontal bars on log scales, plus idle RSS per connection."""
    import math

    peers = list(dict.fromkeys(p for _, p, *_ in chart))
    busy = list(dict.fromkeys(t for t, *_ in chart if not t.startswith("idle")))
    idle = list(dict.fromkeys(t for t, *_ in chart if t.startswith("idle")))
    if not busy and not idle:
        return
    val = {(t, p): (h, l) for t, p, h, l in chart}
    bar, gap, label_w, panel_w, top = 11, 10, 285, 330, 58
    row_h = bar * len(peers) + gap
    rows = len(busy) + len(idle)
    height = top + row_h * rows + 30 + (40 if idle else 0) + 40
    width = label_w + 2 * panel_w + 120
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="18" font-size="14" font-weight="bold">sockhub and its peers: '
           'throughput per server CPU-second and latency p99 (medians over rounds)</text>']
    # legend
    x = 10
    for p in peers:
        c = PEER_COLORS.get(p, "#7f7f7f")
        out.append(f'<rect x="{x}" y="28" width="12" height="12" fill="{c}"/>'
                   f'<text x="{x + 16}" y="38">{esc(p)}</text>')
        x += 22 + 7 * len(p)

    def panel(x0, title, lo, hi, titles, y0, pick, fmt, ticks):
        """Log-scale bars for `titles` starting at y0; pick(t, p) -> value or None."""
        span = math.log10(hi) - math.log10(lo)
        pos = lambda v: x0 + panel_w * (math.log10(max(v, lo)) - math.log10(lo)) / span
        out.append(f'<text x="{x0}" y="{y0 - 6}" font-weight="bold">{esc(title)}</text>')
        yb = y0 + row_h * len(titles)
        for tv, tl in ticks:
            if lo <= tv <= hi:
                tx = pos(tv)
                out.append(f'<line x1="{tx:.1f}" y1="{y0}" x2="{tx:.1f}" y2="{yb}" stroke="#ddd"/>'
                           f'<text x="{tx:.1f}" y="{yb + 12}" text-anchor="middle" fill="#555">{tl}</text>')
        for i, t in enumerate(titles):
            for j, p in enumerate(peers):
                y = y0 + i * row_h + j * bar
                v = pick(t, p)
                c = PEER_COLORS.get(p, "#7f7f7f")
                if v is None or v <= 0:
                    out.append(f'<text x="{x0 + 3}" y="{y + bar - 2}" fill="#999" font-size="9">'
                               f'{"no result" if (t, p) in val else "not run"}</text>')
                    continue
                w = max(1.0, pos(v) - x0)
                out.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{bar - 1}" fill="{c}"/>'
                           f'<text x="{x0 + w + 3:.1f}" y="{y + bar - 2}" font-size="9">{fmt(v)}</text>')

    def rng(vals, pad_lo=0.5, pad_hi=1.2):
        vals = [v for v in vals if v and v > 0]
        if not vals:
            return 1, 10
        lo = 10 ** math.floor(math.log10(min(vals) * pad_lo))
        hi = 10 ** math.ceil(math.log10(max(vals) * pad_hi))
        return lo, hi

    def si(v):
        for d, suf in ((1e6, "M"), (1e3, "k")):
            if v >= d:
                return f"{v / d:.3g}{suf}"
        return f"{v:.3g}"

    def ms(v):
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"

    decades = lambda unit: [(10 ** k, unit(10 ** k)) for k in range(-3, 9)]
    y0 = top + 20
    for i, t in enumerate(busy + idle):
        y = y0 + i * row_h + (40 if t in idle else 0)
        out.append(f'<text x="{label_w - 8}" y="{y + row_h / 2}" text-anchor="end">{esc(t)}</text>')
    if busy:
        lo, hi = rng([val[k][0] for k in val if k[0] in busy])
        panel(label_w, "msgs (echo) / deliveries (broadcast) per server CPU-s (log)", lo, hi, busy, y0,
              lambda t, p: (val.get((t, p)) or (None, None))[0], si, decades(si))
        lo, hi = rng([val[k][1] / 1000 for k in val if k[0] in busy and val[k][1]])
        panel(label_w + panel_w + 50, "latency p99, ms (log; lower is better)", lo, hi, busy, y0,
              lambda t, p: ((val.get((t, p)) or (None, None))[1] or 0) / 1000 or None,
              ms, decades(lambda v: f"{v:g}"))
    if idle:
        yi = y0 + row_h * len(busy) + 40
        lo, hi = rng([val[k][0] for k in val if k[0] in idle])
        panel(label_w, "idle: server RSS per connection, KB (log; lower is better)",
              lo, hi, idle, yi, lambda t, p: (val.get((t, p)) or (None, None))[0],
              lambda v: f"{v:.3g}", decades(lambda v: f"{v:g}"))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
