"""Evaluates every panel query of a Grafana dashboard through Prometheus' HTTP API and
prints the answers as text, panel by panel, then the alert rules' state. Used by demo.sh;
exits non-zero when Prometheus refuses a query (a panel that would show an error).

    python3 demo_queries.py PROMETHEUS_URL DASHBOARD_JSON [WINDOW]
"""

import json
import sys
import urllib.parse
import urllib.request


def query(prometheus, expr):
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as error:
        return json.load(error)


def legend(template, labels):
    text = template or "{}"
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    return text if text != "{}" else json.dumps(labels)


def show(value, unit):
    number = float(value)
    if number != number:  # NaN: nothing in the window (0/0)
        return "no data"
    if unit == "percentunit":
        return f"{number * 100:.1f}%"
    if unit == "s":
        return f"{number:.3f} s"
    if unit == "reqps":
        return f"{number:.3f}/s"
    return f"{number:g}"


def main():
    prometheus, dashboard_path = sys.argv[1], sys.argv[2]
    window = sys.argv[3] if len(sys.argv) > 3 else "2m"
    dashboard = json.load(open(dashboard_path))
    refused = 0
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            print(f"\n== {panel['title']}")
            continue
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        print(f"-- {panel['title']}")
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$window", window)
            answer = query(prometheus, expr)
            if answer.get("status") != "success":
                refused += 1
                print(f"   REFUSED {expr!r}: {answer.get('error')}")
                continue
            rows = sorted(
                (legend(target.get("legendFormat"), r["metric"]), show(r["value"][1], unit))
                for r in answer["data"]["result"]
            )
            for name, value in rows or [("(no series)", "")]:
                print(f"   {name:<44} {value}")
    rules = query(prometheus, "ALERTS")
    firing = [r["metric"].get("alertname") for r in rules.get("data", {}).get("result", [])]
    print(f"\n== Alerts firing or pending: {', '.join(firing) if firing else 'none'}")
    sys.exit(1 if refused else 0)


if __name__ == "__main__":
    main()
