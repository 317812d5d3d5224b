#!/usr/bin/env python3
"""Checks ops/ against the code: every metric and label the alert rules and the Grafana dashboard
use is one mailpushd registers (src/), every alert has a severity, a summary and a runbook
section that exists, and the dashboard is valid JSON. Python standard library only; PyYAML, when
present, adds a structural check of the rule file. Usage: python3 tests/ops/ops_files_test.py"""

import json
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
ALERTS = ROOT / "ops/prometheus/alerts.yml"
RUNBOOK = ROOT / "ops/runbook.md"
DASHBOARD = ROOT / "ops/grafana/mailpush.json"
RULE_TESTS = ROOT / "tests/ops/alerts_rules_test.yml"

# Not mailpushd's: Prometheus' own per-target series.
EXTERNAL_METRICS = {"up"}
# Labels Prometheus adds (scrape target, job) or the scrape configuration sets (region).
EXTERNAL_LABELS = {"instance", "job", "region", "le", "quantile"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "rate", "increase", "irate", "delta", "time", "offset", "and", "or", "unless",
    "histogram_quantile", "topk", "bottomk", "abs", "clamp_min", "clamp_max", "label_replace",
    "vector", "scalar", "bool", "absent", "changes", "resets", "deriv", "predict_linear",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time",
}

failures = []


def fail(msg):
    failures.append(msg)


def registered_metrics():
    """Metric family names registered in src/ (prometheus-cpp .Name("...")), and every string
    literal of src/ (to find label names and values)."""
    names, literals = set(), set()
    for path in (ROOT / "src").rglob("*"):
        if path.suffix not in (".cpp", ".hpp"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        names.update(re.findall(r'\.Name\(\s*"(mailpush_[a-z0-9_]+)"\s*\)', text))
        literals.update(re.findall(r'"([A-Za-z0-9_]+)"', text))
    return names, literals


def metric_known(name, names):
    if name in names or name in EXTERNAL_METRICS:
        return True
    return any(name.endswith(s) and name[: -len(s)] in names for s in HISTOGRAM_SUFFIXES)


def check_expr(where, expr, names, literals):
    """Metric names, selector labels and literal selector values, and by/without labels."""
    used = set()
    for metric in re.findall(r"\b(mailpush_[a-z0-9_]+)", expr):
        used.add(metric)
        if not metric_known(metric, names):
            fail(f"{where}: metric {metric} is not registered anywhere in src/")
    for metric in re.findall(r"\b(up)\s*\{", expr):
        used.add(metric)
    for metric, selector in re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{([^}]*)\}", expr):
        for label, op, value in re.findall(r'([a-z_][a-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
            if label not in EXTERNAL_LABELS and label not in literals:
                fail(f"{where}: label {label} (on {metric}) appears nowhere in src/")
            # A plain word compared for (in)equality must be a value the code can produce.
            if op in ("=", "!=") and re.fullmatch(r"[A-Za-z_]+", value) and metric != "up":
                if value not in literals:
                    fail(f"{where}: {metric}{{{label}{op}\"{value}\"}}: value not found in src/")
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        for label in filter(None, (l.strip() for l in group.split(","))):
            if label not in EXTERNAL_LABELS and label not in literals:
                fail(f"{where}: grouping label {label} appears nowhere in src/")
    return used


def rules_from_text(text):
    """(alert, expr, block) per rule, with the standard library only: the file's own layout
    (`- alert:` items, `expr:` plain or `|` block)."""
    rules = []
    blocks = re.split(r"\n(?=[ \t]*- alert:)", text)
    for block in blocks[1:]:
        name = re.match(r"\s*- alert:\s*(\S+)", block).group(1)
        m = re.search(r"\n(\s*)expr:\s*\|\s*\n((?:\1\s+.*\n?)+)", block)
        if m:
            expr = m.group(2)
        else:
            m = re.search(r"\n\s*expr:\s*(.+)", block)
            expr = m.group(1) if m else ""
        rules.append((name, expr, block))
    return rules


def runbook_anchors():
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            anchor = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(anchor)
    return anchors


def main():
    names, literals = registered_metrics()
    if len(names) < 20:
        fail(f"found only {len(names)} registered metrics in src/: the scan is broken")

    text = ALERTS.read_text(encoding="utf-8")
    if "\t" in text:
        fail("alerts.yml: tabs are not allowed in YAML indentation")
    rules = rules_from_text(text)
    if not rules:
        fail("alerts.yml: no rules found")
    anchors = runbook_anchors()
    seen = set()
    for name, expr, block in rules:
        if name in seen:
            fail(f"alerts.yml: alert {name} twice")
        seen.add(name)
        if not expr.strip():
            fail(f"alerts.yml: {name} has no expr")
        check_expr(f"alerts.yml {name}", expr, names, literals)
        sev = re.search(r"\n\s*severity:\s*(\S+)", block)
        if not sev or sev.group(1) not in ("info", "warning", "critical"):
            fail(f"alerts.yml: {name} needs severity info, warning or critical")
        if not re.search(r"\n\s*summary:", block):
            fail(f"alerts.yml: {name} has no summary")
        rb = re.search(r'\n\s*runbook:\s*"?ops/runbook\.md#([a-z0-9\-_]+)"?', block)
        if not rb:
            fail(f"alerts.yml: {name} has no runbook link ops/runbook.md#...")
        elif rb.group(1) not in anchors:
            fail(f"alerts.yml: {name}: ops/runbook.md has no section #{rb.group(1)}")

    try:
        import yaml  # optional: PyYAML (Debian python3-yaml)
    except ImportError:
        yaml = None
    if yaml is not None:
        doc = yaml.safe_load(text)
        parsed = [r for g in doc["groups"] for r in g["rules"]]
        for g in doc["groups"]:
            if not isinstance(g.get("name"), str) or not isinstance(g.get("rules"), list):
                fail(f"alerts.yml: group {g!r} needs a name and a list of rules")
        for r in parsed:
            extra = set(r) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            if extra:
                fail(f"alerts.yml: {r.get('alert')}: unknown keys {sorted(extra)}")
            if "for" in r and not re.fullmatch(r"\d+[smhd]", str(r["for"])):
                fail(f"alerts.yml: {r['alert']}: bad duration for: {r['for']}")
        if sorted(r["alert"] for r in parsed) != sorted(seen):
            fail("alerts.yml: the text scan and the YAML parser disagree on the rules")
        # The text scan's expressions must be the parser's.
        for name, expr, _ in rules:
            real = next(r["expr"] for r in parsed if r["alert"] == name)
            if " ".join(str(real).split()) != " ".join(expr.split()):
                fail(f"alerts.yml: {name}: expr scan mismatch")

    try:
        dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        fail(f"grafana/mailpush.json: {e}")
        dash = {}
    panels = dash.get("panels", [])
    if not panels:
        fail("grafana/mailpush.json: no panels")
    exprs = 0
    for p in panels:
        for t in p.get("targets", []):
            if "expr" in t:
                exprs += 1
                check_expr(f"grafana panel '{p.get('title')}'", t["expr"], names, literals)
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(q, str) and "mailpush_" in q:
            check_expr(f"grafana variable {v.get('name')}", q, names, literals)

    promtool = shutil.which("promtool")
    if promtool:
        for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(RULE_TESTS)]):
            run = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120,
                                 cwd=RULE_TESTS.parent)
            if run.returncode != 0:
                fail(f"promtool {' '.join(args[:2])}:\n{run.stdout}{run.stderr}")
    else:
        print("note: promtool not installed: PromQL and rule unit tests skipped")

    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print(f"ok: {len(rules)} alerts, {exprs} dashboard queries, all metrics among the "
          f"{len(names)} registered in src/{'' if yaml else ' (no PyYAML: text checks only)'}"
          f"{'; promtool check rules and test rules passed' if promtool else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
