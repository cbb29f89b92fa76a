#!/usr/bin/env python3
"""Summarise an Autobahn|Testsuite fuzzingclient run and compare it with the golden file.

Reads test-output/autobahn/index.json (written by `wstest -m fuzzingclient`),
prints verdict counts overall and per section, and compares each case's
`behavior` and `behaviorClose` with conformance/autobahn/expected-results.json.

Exit status:
  0  every case run matches the golden file (or --update / --markdown / --summary-only succeeded)
  1  a verdict changed, or a failing verdict (FAILED, WRONG CODE, UNCLEAN, NO_CLOSE)
     appeared for a case the golden file does not list
  2  no golden file yet, no index.json, unreadable input, or refused --update

Standard library only.
"""

import argparse
import json
import os
import sys
from collections import Counter, OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_INDEX = os.path.join(ROOT, "test-output", "autobahn", "index.json")
DEFAULT_GOLDEN = os.path.join(ROOT, "conformance", "autobahn", "expected-results.json")
DEFAULT_AGENT = "sockhub"

# Verdicts in display order. FAILING ones break the build unless the golden file lists them.
VERDICTS = [
    "OK",
    "NON-STRICT",
    "INFORMATIONAL",
    "UNIMPLEMENTED",
    "FAILED",
    "WRONG CODE",
    "UNCLEAN",
    "NO_CLOSE",
    "FAILED BY CLIENT",
]
FAILING = {"FAILED", "WRONG CODE", "UNCLEAN", "NO_CLOSE"}
WARNING = {"FAILED BY CLIENT"}
# Rank used only to label a change as a regression or an improvement.
RANK = {"OK": 0, "NON-STRICT": 1, "INFORMATIONAL": 1, "FAILED BY CLIENT": 1, "UNIMPLEMENTED": 2}

# The suite has no sections 8 or 11.
SECTIONS = OrderedDict(
    [
        (1, "Framing"),
        (2, "Pings/Pongs"),
        (3, "Reserved Bits"),
        (4, "Opcodes"),
        (5, "Fragmentation"),
        (6, "UTF-8 Handling"),
        (7, "Close Handling"),
        (9, "Limits/Performance"),
        (10, "Misc"),
        (12, "Compression (payloads)"),
        (13, "Compression (parameters)"),
    ]
)


class InputError(Exception):
    pass


def case_key(case):
    try:
        return tuple(int(p) for p in case.split("."))
    except ValueError:
        return (10**9, case)


def section_of(case):
    try:
        return int(case.split(".", 1)[0])
    except ValueError:
        return None


def rank(verdict):
    return 3 if verdict in FAILING else RANK.get(verdict, 3)


def load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InputError("cannot read %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise InputError("%s is not valid JSON: %s" % (path, e))


def agent_results(doc, agent, path):
    """Return {case: {"behavior", "behaviorClose"}} for agent from an index/golden document."""
    if not isinstance(doc, dict) or not doc:
        raise InputError("%s: expected an object keyed by agent name" % path)
    if agent not in doc:
        raise InputError("%s: no agent %r (agents: %s)" % (path, agent, ", ".join(sorted(doc))))
    cases = doc[agent]
    if not isinstance(cases, dict):
        raise InputError("%s: agent %r is not an object of cases" % (path, agent))
    out = {}
    for case, res in cases.items():
        if not isinstance(res, dict) or "behavior" not in res or "behaviorClose" not in res:
            raise InputError("%s: case %s lacks behavior/behaviorClose" % (path, case))
        out[case] = {"behavior": res["behavior"], "behaviorClose": res["behaviorClose"]}
    return OrderedDict(sorted(out.items(), key=lambda kv: case_key(kv[0])))


def ordered_verdicts(counter):
    known = [v for v in VERDICTS if counter.get(v)]
    extra = sorted(v for v in counter if v not in VERDICTS)
    return known + extra


def run_info(index_path):
    """Best-effort facts about the run from files wstest leaves beside index.json."""
    info = {}
    d = os.path.dirname(os.path.abspath(index_path))
    try:
        with open(os.path.join(d, "fuzzingclient.json"), encoding="utf-8") as f:
            spec = json.load(f)
        info["cases"] = spec.get("cases")
        info["excluded"] = spec.get("exclude-cases")
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(d, "wstest.log"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if "Autobahn Testsuite Version" in line:
                    info["version"] = line.split("Autobahn Testsuite Version", 1)[1].split("/")[0].strip()
                    break
    except OSError:
        pass
    return info


# ------------------------------------------------------------------ summary


def section_rows(results):
    per = OrderedDict((s, Counter()) for s in SECTIONS)
    close_bad = Counter()
    for case, r in results.items():
        s = section_of(case)
        per.setdefault(s, Counter())[r["behavior"]] += 1
        if r["behaviorClose"] != "OK":
            close_bad[s] += 1
    return per, close_bad


def print_summary(results, index_path, out=sys.stdout):
    beh = Counter(r["behavior"] for r in results.values())
    clo = Counter(r["behaviorClose"] for r in results.values())
    per, close_bad = section_rows(results)
    cols = ordered_verdicts(beh)
    info = run_info(index_path)

    print("Autobahn|Testsuite results: %s (%d cases)" % (index_path, len(results)), file=out)
    if info.get("excluded"):
        print("excluded by spec: %s" % ", ".join(info["excluded"]), file=out)
    print("behavior:      " + ", ".join("%s %d" % (v, beh[v]) for v in ordered_verdicts(beh)), file=out)
    print("behaviorClose: " + ", ".join("%s %d" % (v, clo[v]) for v in ordered_verdicts(clo)), file=out)
    print(file=out)

    header = ["sect", "name", "cases"] + cols + ["close!=OK"]
    rows = []
    for s, c in per.items():
        n = sum(c.values())
        name = SECTIONS.get(s, "?")
        if n == 0:
            rows.append([str(s), name, "-"] + ["" for _ in cols] + [""])
        else:
            rows.append([str(s), name, str(n)] + [str(c.get(v, 0)) for v in cols] + [str(close_bad.get(s, 0))])
    rows.append(["all", "", str(len(results))] + [str(beh.get(v, 0)) for v in cols] + [str(sum(close_bad.values()))])
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def fmt(r):
        return "  ".join(
            (cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])) for i, cell in enumerate(r)
        ).rstrip()

    print(fmt(header), file=out)
    print(fmt(["-" * w for w in widths]), file=out)
    for r in rows[:-1]:
        print(fmt(r), file=out)
    print(fmt(["-" * w for w in widths]), file=out)
    print(fmt(rows[-1]), file=out)

    notable = [
        (case, r)
        for case, r in results.items()
        if (r["behavior"] not in ("OK", "UNIMPLEMENTED")) or r["behaviorClose"] != "OK"
    ]
    if notable:
        print(file=out)
        print("cases not plainly OK (UNIMPLEMENTED only counted above):", file=out)
        for case, r in notable:
            print("  %-9s behavior=%-14s behaviorClose=%s" % (case, r["behavior"], r["behaviorClose"]), file=out)


def print_markdown(results, index_path, agent, out=sys.stdout):
    beh = Counter(r["behavior"] for r in results.values())
    per, close_bad = section_rows(results)
    cols = ordered_verdicts(beh)
    info = run_info(index_path)
    version = info.get("version") or "?"
    excluded = info.get("excluded") or []
    line = "Autobahn|Testsuite %s fuzzingclient against `%s`: %d cases" % (version, agent, len(results))
    if excluded:
        line += " (excluded: %s)" % ", ".join("`%s`" % e for e in excluded)
    print(line + ".", file=out)
    print(file=out)
    print("| Section | Cases | " + " | ".join(cols) + " | Close not OK |", file=out)
    print("|---|---:|" + "---:|" * len(cols) + "---:|", file=out)
    for s, c in per.items():
        n = sum(c.values())
        if n == 0:
            continue
        cells = [str(c.get(v, 0)) for v in cols]
        print("| %d %s | %d | %s | %d |" % (s, SECTIONS.get(s, ""), n, " | ".join(cells), close_bad.get(s, 0)), file=out)
    print(
        "| **Total** | **%d** | %s | **%d** |"
        % (len(results), " | ".join("**%d**" % beh.get(v, 0) for v in cols), sum(close_bad.values())),
        file=out,
    )
    notable = [
        "%s (%s%s)" % (case, r["behavior"], "" if r["behaviorClose"] == "OK" else ", close " + r["behaviorClose"])
        for case, r in results.items()
        if r["behavior"] not in ("OK", "UNIMPLEMENTED") or r["behaviorClose"] != "OK"
    ]
    if notable:
        print(file=out)
        print("Not plainly OK: " + ", ".join(notable) + ".", file=out)


# ------------------------------------------------------------------ compare / update


def compare(results, golden):
    changed, new_failing, new_other, warnings = [], [], [], []
    for case, r in results.items():
        g = golden.get(case)
        if g is None:
            if r["behavior"] in FAILING or r["behaviorClose"] in FAILING:
                new_failing.append(case)
            else:
                new_other.append(case)
        elif (g["behavior"], g["behaviorClose"]) != (r["behavior"], r["behaviorClose"]):
            changed.append(case)
        if r["behaviorClose"] in WARNING or r["behavior"] in WARNING:
            warnings.append(case)
    not_run = [c for c in golden if c not in results]
    return changed, new_failing, new_other, warnings, not_run


def describe_change(g, r):
    before = max(rank(g["behavior"]), rank(g["behaviorClose"]))
    after = max(rank(r["behavior"]), rank(r["behaviorClose"]))
    if after > before:
        return "REGRESSION"
    if after < before:
        return "improved"
    return "changed"


def write_golden(path, agent, results):
    """Same shape as wstest's index.json, one case per line so diffs stay readable."""
    lines = [
        "    %s: %s" % (json.dumps(case), json.dumps({"behavior": r["behavior"], "behaviorClose": r["behaviorClose"]}))
        for case, r in results.items()
    ]
    text = "{\n  %s: {\n%s\n  }\n}\n" % (json.dumps(agent), ",\n".join(lines))
    json.loads(text)  # never write something check.py could not read back
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def shown(path):
    """Path relative to the repo root when inside it, else absolute."""
    ap = os.path.abspath(path)
    return os.path.relpath(ap, ROOT) if ap.startswith(ROOT + os.sep) else ap


def do_update(args, results):
    old = None
    if os.path.exists(args.golden):
        old = agent_results(load_json(args.golden), args.agent, args.golden)
    new = OrderedDict(results)
    if old is not None:
        dropped = [c for c in old if c not in results]
        if dropped and args.merge:
            for c in dropped:
                new[c] = old[c]
            new = OrderedDict(sorted(new.items(), key=lambda kv: case_key(kv[0])))
        elif dropped and not args.force:
            print(
                "refusing --update: the latest run lacks %d case(s) that the golden file lists (e.g. %s).\n"
                "Use --update --merge to keep them, or --update --force to drop them."
                % (len(dropped), ", ".join(dropped[:5])),
                file=sys.stderr,
            )
            return 2
        changed = [c for c in results if c in old and old[c] != results[c]]
        added = [c for c in results if c not in old]
        print("golden file: %d case(s) changed, %d added, %d dropped" % (
            len(changed), len(added), 0 if args.merge else len(dropped)))
        for c in changed:
            print("  %-9s %s/%s -> %s/%s" % (
                c, old[c]["behavior"], old[c]["behaviorClose"], results[c]["behavior"], results[c]["behaviorClose"]))
    accepted = [c for c, r in new.items() if r["behavior"] in FAILING or r["behaviorClose"] in FAILING]
    write_golden(args.golden, args.agent, new)
    print("wrote %s (%d cases)" % (args.golden, len(new)))
    if accepted:
        print("note: the golden file now accepts %d failing verdict(s): %s" % (len(accepted), ", ".join(accepted)))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="Summarise Autobahn results and compare them with the golden file.")
    p.add_argument("--index", default=DEFAULT_INDEX, help="index.json of the run (default: %(default)s)")
    p.add_argument("--golden", default=DEFAULT_GOLDEN, help="golden file (default: %(default)s)")
    p.add_argument("--agent", default=DEFAULT_AGENT, help="agent name in both files (default: %(default)s)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--update", action="store_true", help="rewrite the golden file from the latest run")
    mode.add_argument("--markdown", action="store_true", help="print a README-ready markdown summary only")
    mode.add_argument("--summary-only", action="store_true", help="print the summary; no golden comparison")
    p.add_argument("--merge", action="store_true", help="with --update: keep golden cases absent from the run")
    p.add_argument("--force", action="store_true", help="with --update: drop golden cases absent from the run")
    args = p.parse_args(argv)
    if (args.merge or args.force) and not args.update:
        p.error("--merge/--force only go with --update")

    try:
        if not os.path.exists(args.index):
            print("no results at %s; run `scripts/autobahn run URL` first" % args.index, file=sys.stderr)
            return 2
        results = agent_results(load_json(args.index), args.agent, args.index)
        if not results:
            print("%s holds no cases" % args.index, file=sys.stderr)
            return 2

        if args.markdown:
            print_markdown(results, args.index, args.agent)
            return 0

        print_summary(results, args.index)
        print()
        if args.summary_only:
            return 0
        if args.update:
            return do_update(args, results)

        if not os.path.exists(args.golden):
            print("no golden file yet; run check --update  (would be %s)" % args.golden)
            return 2
        golden = agent_results(load_json(args.golden), args.agent, args.golden)
    except InputError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2

    changed, new_failing, new_other, warnings, not_run = compare(results, golden)
    if not_run:
        print("note: %d golden case(s) not in this run (partial run?), e.g. %s" % (len(not_run), ", ".join(not_run[:5])))
    if new_other:
        print("note: %d case(s) not in the golden file, none failing, e.g. %s" % (len(new_other), ", ".join(new_other[:5])))
    if warnings:
        print("warning: FAILED BY CLIENT in %d case(s): %s" % (len(warnings), ", ".join(warnings)))
    if changed:
        print("%d case(s) whose verdict changed (golden -> now):" % len(changed))
        for c in changed:
            g, r = golden[c], results[c]
            print("  %-9s %-10s behavior %s -> %s; behaviorClose %s -> %s" % (
                c, describe_change(g, r), g["behavior"], r["behavior"], g["behaviorClose"], r["behaviorClose"]))
    if new_failing:
        print("%d failing verdict(s) for cases the golden file does not list:" % len(new_failing))
        for c in new_failing:
            r = results[c]
            print("  %-9s behavior=%s behaviorClose=%s" % (c, r["behavior"], r["behaviorClose"]))
    if changed or new_failing:
        print(
            "\nFAIL: results differ from %s. Timing-sensitive cases (6.4.x, 9.x, some 7.x) can flip under load: "
            "re-run one alone (scripts/autobahn run URL CASE) before believing it. If the change is intended, "
            "accept it with scripts/autobahn check --update." % shown(args.golden)
        )
        return 1
    print("PASS: %d case(s) match %s" % (len(results) - len(new_other), shown(args.golden)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
