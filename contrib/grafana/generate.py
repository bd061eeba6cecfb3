#!/usr/bin/env python3
"""Writes the two Grafana dashboards of contrib/grafana/ from one description.

    runner-metrics.json                 for `--prometheus-names ours` (the default)
    runner-metrics-upstream-names.json  for `--prometheus-names upstream`

The panels are the same; only the names of the durations and job counts
differ (docs/prometheus.md, "Two namings"). `--check` exits 1 if a committed
file differs from what this script writes (scripts/test-contrib.sh runs it).
Every panel's PromQL is evaluated against a real Prometheus in
tests/tests/e2e/prometheus_server.rs, with the variables set to match all.

Variables: `datasource` (a Prometheus data source), `instance` and `flavor`
(label values, "All" = `.*`), `quantile` (0.5 ... 0.99).
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The names each naming writes (host/src/sinks/prometheus/names.rs).
NAMINGS = {
    "ours": {
        "file": "runner-metrics.json",
        "uid": "runner-metrics",
        "title": "runner-metrics",
        "spawn": "runner_metrics_spawn_duration_seconds",
        "idle": "runner_metrics_idle_seconds",
        "queue": "runner_metrics_queue_duration_seconds",
        "job": "runner_metrics_job_duration_seconds",
        "extract": None,
        "by_repository": ("runner_metrics_jobs_by_repository_total", "repository"),
        "by_event": ("runner_metrics_jobs_by_github_event_total", "github_event"),
        "by_conclusion": ("runner_metrics_jobs_by_conclusion_total", "conclusion"),
        "by_status": ("runner_metrics_jobs_by_status_total", "status"),
        "jobs_by_flavor": True,
    },
    "upstream": {
        "file": "runner-metrics-upstream-names.json",
        "uid": "runner-metrics-upstream-names",
        "title": "runner-metrics (upstream names)",
        "spawn": "runner_spawn_duration_seconds",
        "idle": "runner_idle_duration_seconds",
        "queue": "runner_queue_duration_seconds",
        "job": "job_duration_seconds",
        "extract": "extract_metrics_duration_seconds",
        "by_repository": ("job_repository_count", "repository"),
        "by_event": ("job_event_count", "event"),
        "by_conclusion": ("job_conclusion_count", "conclusion"),
        "by_status": ("job_status_count", "status"),
        "jobs_by_flavor": False,
    },
}

INSTANCE = 'instance=~"$instance"'
FLAVOR = 'flavor=~"$flavor"'


def quantile(histogram):
    return (
        f"histogram_quantile($quantile, sum by (flavor, le) "
        f"(rate({histogram}_bucket{{{INSTANCE},{FLAVOR}}}[$__rate_interval])))"
    )


def jobs_by(naming, key, window="$__rate_interval"):
    name, label = naming[key]
    selector = f"{INSTANCE},{FLAVOR}" if naming["jobs_by_flavor"] else INSTANCE
    return name, label, f"sum by ({label}) (increase({name}{{{selector}}}[{window}]))"


def panels(naming):
    """(row title, [(title, type, unit, description, [(expr, legend)])])."""
    durations = [
        ("Runner spawn duration", naming["spawn"], "From the storage's creation to the runner being installed."),
        ("Runner idle duration", naming["idle"], "Installed and waiting before the job started."),
        ("Job queue duration", naming["queue"], "Queued on GitHub before a runner took the job (needs lookups)."),
        ("Job duration", naming["job"], "From the job's start to its end on the runner."),
    ]
    if naming["extract"]:
        durations.append(("Extract duration", naming["extract"], "One whole collect."))
    rows = [
        (
            "Durations ($quantile quantile)",
            [
                (title, "timeseries", "s", description, [(quantile(histogram), "{{flavor}}")])
                for title, histogram, description in durations
            ],
        )
    ]
    jobs = []
    for key, title in [
        ("by_conclusion", "Jobs by conclusion"),
        ("by_status", "Jobs by post-job status"),
        ("by_event", "Jobs by GitHub event"),
    ]:
        _, label, expr = jobs_by(naming, key)
        jobs.append((title, "timeseries", "short", "Jobs that ended, per rate interval.", [(expr, f"{{{{{label}}}}}")]))
    _, label, expr = jobs_by(naming, "by_repository", "$__range")
    jobs.append(
        (
            "Top repositories",
            "bargauge",
            "short",
            "Jobs that ended in the time range, ten busiest repositories (past the limit: other).",
            [(f"topk(10, {expr})", "{{repository}}")],
        )
    )
    rows.append(("Jobs", jobs))
    health = [
        (
            "Since the last successful collect",
            "stat",
            "s",
            "Seconds since a collect last finished without an error.",
            [
                (
                    f"time() - max by (instance) (runner_metrics_last_success_timestamp_seconds{{{INSTANCE}}})",
                    "{{instance}}",
                )
            ],
        ),
        (
            "Storages left failed",
            "stat",
            "short",
            "Storages the last collect left failed (kept for the next run).",
            [(f'sum by (instance) (runner_metrics_last_run_storages{{{INSTANCE},outcome="failed"}})', "{{instance}}")],
        ),
        (
            "Collect duration",
            "timeseries",
            "s",
            "How long the last collect took.",
            [(f"max by (instance) (runner_metrics_last_run_duration_seconds{{{INSTANCE}}})", "{{instance}}")],
        ),
        (
            "Storages by outcome",
            "timeseries",
            "short",
            "Storages handled, per rate interval: extracted, no-data, quarantined, skipped, failed.",
            [
                (
                    f"sum by (outcome) (increase(runner_metrics_storages_total{{{INSTANCE}}}[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
        ),
        (
            "Events written",
            "timeseries",
            "short",
            "Event lines appended to the metrics log, per rate interval.",
            [
                (
                    f"sum by (event) (increase(runner_metrics_events_total{{{INSTANCE},{FLAVOR}}}[$__rate_interval]))",
                    "{{event}}",
                )
            ],
        ),
        (
            "GitHub lookups by result",
            "timeseries",
            "short",
            "Job lookups per rate interval: found, not-found, failed, skipped (lookups had stopped).",
            [
                (
                    f"sum by (result) (increase(runner_metrics_lookups_total{{{INSTANCE}}}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
        ),
        (
            "GitHub rate limit remaining",
            "timeseries",
            "short",
            "X-RateLimit-Remaining of GitHub's last answer in the last collect.",
            [(f"min by (instance) (runner_metrics_github_rate_limit_remaining{{{INSTANCE}}})", "{{instance}}")],
        ),
    ]
    rows.append(("Health of the collector", health))
    return rows


def variable_query(name, label, metric):
    query = f"label_values({metric}, {label})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
    }


def dashboard(naming):
    grafana_panels = []
    panel_id = 0
    y = 0
    for row_title, row_panels in panels(naming):
        panel_id += 1
        grafana_panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        y += 1
        for index, (title, kind, unit, description, targets) in enumerate(row_panels):
            panel_id += 1
            width = 8
            grafana_panels.append(
                {
                    "id": panel_id,
                    "type": kind,
                    "title": title,
                    "description": description,
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
                    "gridPos": {"h": 8, "w": width, "x": (index % 3) * width, "y": y + (index // 3) * 8},
                    "targets": [
                        {
                            "datasource": {"type": "prometheus", "uid": "${datasource}"},
                            "expr": expr,
                            "legendFormat": legend,
                            "refId": chr(ord("A") + n),
                        }
                        for n, (expr, legend) in enumerate(targets)
                    ],
                }
            )
        y += ((len(row_panels) + 2) // 3) * 8
    return {
        "uid": naming["uid"],
        "title": naming["title"],
        "description": "GitHub self-hosted runners seen through runner-metrics' node_exporter textfile "
        "(generated by contrib/grafana/generate.py; docs/prometheus.md).",
        "tags": ["github-runners", "runner-metrics"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "5m",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                },
                variable_query("instance", "instance", "runner_metrics_last_collect_timestamp_seconds"),
                variable_query("flavor", "flavor", "runner_metrics_events_total"),
                {
                    "name": "quantile",
                    "label": "quantile",
                    "type": "custom",
                    "query": "0.5,0.9,0.95,0.99",
                    "current": {"selected": True, "text": "0.95", "value": "0.95"},
                    "options": [
                        {"selected": q == "0.95", "text": q, "value": q} for q in ["0.5", "0.9", "0.95", "0.99"]
                    ],
                    "hide": 0,
                },
            ]
        },
        "panels": grafana_panels,
    }


def render(naming):
    return json.dumps(dashboard(naming), indent=2) + "\n"


def main(argv):
    check = argv[1:] == ["--check"]
    if argv[1:] not in ([], ["--check"]):
        sys.exit(f"usage: {argv[0]} [--check]")
    stale = []
    for naming in NAMINGS.values():
        path = HERE / naming["file"]
        text = render(naming)
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        sys.exit(f"not what contrib/grafana/generate.py writes (run it): {', '.join(stale)}")


if __name__ == "__main__":
    main(sys.argv)
