#!/usr/bin/env python3
"""Summarize a bench/peers results directory into a markdown table (stdlib only).

    python3 summarize.py RESULTS_DIR [--out FILE.md]

Reads every RESULTS_DIR/*.json written by `sockhub bench --json` (the peer is the `label`),
groups by scenario parameters, and prints per scenario and peer the median over rounds of the
headline figure (msgs or deliveries per server CPU-second; RSS KB per idle connection), latency
p99, and the ratio to the best peer other than sockhub. Optionally draws a chart (SVG) when
matplotlib is importable.
"""
import argparse
import glob
import json
import os
import statistics
import sys

PEER_ORDER = ["sockhub", "tungstenite", "fastwebsockets", "node-ws", "python-websockets"]


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
        "**ratio** = this peer ÷ the best peer other than sockhub on the same line "
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
        others = {p: r for p, r in rows.items() if p != "sockhub" and r["head"] is not None}
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
        draw(chart, os.path.splitext(a.out)[0] + ".svg")


def draw(chart, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return  # optional
    titles = list(dict.fromkeys(t for t, *_ in chart if not t.startswith("idle")))
    peers = list(dict.fromkeys(p for _, p, *_ in chart))
    if not titles:
        return
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.6 * len(titles) + 3))
    h = 0.8 / max(1, len(peers))
    for i, peer in enumerate(peers):
        vals = {t: (v, l) for t, p, v, l in chart if p == peer}
        ys = [j + i * h for j in range(len(titles))]
        axes[0].barh(ys, [(vals.get(t) or (0, 0))[0] or 0 for t in titles], height=h, label=peer)
        axes[1].barh(ys, [((vals.get(t) or (0, 0))[1] or 0) / 1000 for t in titles], height=h, label=peer)
    for ax, name in zip(axes, ("msgs or deliveries per server CPU-second", "latency p99 (ms)")):
        ax.set_yticks([j + 0.4 - h / 2 for j in range(len(titles))])
        ax.set_yticklabels(titles if ax is axes[0] else [])
        ax.set_xlabel(name)
        ax.invert_yaxis()
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
