"""contrib/grafana/rmqfast.json: an importable dashboard whose every query names metrics and labels
that /metrics really has.

The structural tests read the JSON (ids, data sources, targets, layout, template variables, the
README's panel table). The integration test drives a proxy with a real Java producer and push
consumer, a RocketMQLogger sending through it, a policy denial and a topic error, scrapes
/metrics, and checks every PromQL expression of the dashboard against that scrape with
`problems()`, whose own failures the unit tests show.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rmqfast.codec import RequestCode, ResponseCode
from rmqfast.devcluster import DevCluster
from rmqfast.logger import RocketMQLogger
from rmqfast.proxy import Proxy

from .fakes import wait_until
from .javatools import JavaTools
from .remoting import RemotingClient, create_topic, create_topic_fields, new_topic, pull_fields

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "contrib" / "grafana" / "rmqfast.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# Labels Prometheus attaches to every series it scrapes (the target's); /metrics never has them.
TARGET_LABELS = frozenset({"instance", "job"})

# -- a PromQL reader: which metric names and label names an expression uses --------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<range>\[[^\]]*\])
    | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(),{}])
    """,
    re.X,
)
# Functions and aggregations the dashboard may use; anything else followed by "(" is an error
# (a misspelt function would otherwise pass as a metric name).
FUNCTIONS = frozenset(
    {
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "topk",
        "bottomk",
        "rate",
        "irate",
        "increase",
        "delta",
        "deriv",
        "histogram_quantile",
        "clamp_min",
        "clamp_max",
        "abs",
        "vector",
        "scalar",
        "sort_desc",
    }
)
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"bool", "and", "or", "unless", "offset", "inf", "nan"})


@dataclass
class Query:
    """What one PromQL expression refers to."""

    expr: str
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)  # (metric, matcher labels)
    grouping: set[str] = field(default_factory=set)  # by / without / on / ignoring labels
    label_values: str | None = None  # label_values(metric, LABEL): LABEL must be on the metric


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append((kind, m.group()))
    return out


def _label_list(toks: list[tuple[str, str]], i: int, expr: str) -> tuple[set[str], int]:
    """Labels of `( a, b )` starting at toks[i] == "("; returns them and the index after ")"."""
    labels: set[str] = set()
    if toks[i] != ("op", "("):
        raise ValueError(f"expected ( at {toks[i][1]!r} in {expr!r}")
    i += 1
    while toks[i] != ("op", ")"):
        kind, text = toks[i]
        if kind == "ident":
            labels.add(text)
        elif text != ",":
            raise ValueError(f"unexpected {text!r} in a label list of {expr!r}")
        i += 1
    return labels, i + 1


def _matchers(toks: list[tuple[str, str]], i: int, expr: str) -> tuple[dict[str, str], int]:
    """`{a="x", b=~"y"}` starting at toks[i] == "{": label → value, and the index after "}"."""
    out: dict[str, str] = {}
    i += 1
    while toks[i] != ("op", "}"):
        if toks[i][1] == ",":
            i += 1
            continue
        (k_kind, label), (_, op), (v_kind, value) = toks[i : i + 3]
        if k_kind != "ident" or op not in ("=", "!=", "=~", "!~") or v_kind != "str":
            raise ValueError(f"bad label matcher near {label!r} in {expr!r}")
        out[label] = value[1:-1]
        i += 3
    return out, i + 1


def parse_promql(expr: str) -> Query:
    """The metric names (with their matchers' labels) and the grouping labels of `expr`, or of
    a Grafana `label_values(selector, label)` variable query."""
    q = Query(expr)
    lv = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", expr, re.S)
    if lv is not None:
        inner = parse_promql(lv.group(1))
        if len(inner.selectors) != 1 or inner.grouping:
            raise ValueError(f"label_values needs one plain selector: {expr!r}")
        q.selectors, q.label_values = inner.selectors, lv.group(2)
        return q
    toks = _tokens(expr)
    toks.append(("op", ""))  # sentinel: toks[i + 1] always exists
    i = 0
    while i < len(toks) - 1:
        kind, text = toks[i]
        nxt = toks[i + 1]
        if kind == "ident" and text in GROUPING:
            if nxt == ("op", "("):
                labels, i = _label_list(toks, i + 1, expr)
                q.grouping |= labels
            else:
                i += 1  # group_left / group_right with no labels
        elif kind == "ident" and (text in FUNCTIONS or nxt == ("op", "(")):
            # `sum(...)`, and `sum by (x) (...)` whose name is followed by its grouping.
            if text not in FUNCTIONS:
                raise ValueError(f"unknown function {text}() in {expr!r}")
            i += 1
        elif kind == "ident" and text.lower() not in KEYWORDS:
            matchers: dict[str, str] = {}
            i += 1
            if nxt == ("op", "{"):
                matchers, i = _matchers(toks, i, expr)
            q.selectors.append((text, set(matchers)))
        elif (kind, text) == ("op", "{"):
            matchers, i = _matchers(toks, i, expr)
            if "__name__" not in matchers:
                raise ValueError(f"a selector with no metric name in {expr!r}")
            q.selectors.append((matchers.pop("__name__"), set(matchers)))
        else:
            i += 1
    if not q.selectors:
        raise ValueError(f"no metric in {expr!r}")
    return q


# -- the exposition side: what /metrics has ------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+\S+")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="(?:[^"\\]|\\.)*"')


@dataclass
class Scrape:
    """Sample names with the label names seen on them, and family types (# TYPE)."""

    samples: dict[str, set[str]]
    types: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[str, set[str]] = {}
        types: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                types[name] = kind
            elif line and not line.startswith("#"):
                m = _SAMPLE.match(line)
                assert m is not None, f"unreadable sample line {line!r}"
                labels = samples.setdefault(m.group(1), set())
                labels.update(_LABEL.findall(m.group(2) or ""))
        return cls(samples, types)


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def problems(q: Query, scrape: Scrape) -> list[str]:
    """Everything `q` asks of /metrics that `scrape` does not have."""
    out: list[str] = []
    known: set[str] = set(TARGET_LABELS)
    for name, labels in q.selectors:
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        # x_bucket / x_sum / x_count are series of histogram x only if x is one.
        if base is not None and scrape.types.get(base) == "histogram":
            family = base
        else:
            family = name
            if name.endswith("_bucket"):
                out.append(f"{name}: {base} is not a histogram in /metrics")
        if name not in scrape.samples:
            where = "has no samples" if family in scrape.types else "is not in /metrics"
            out.append(f"{name} {where}")
            continue
        have = scrape.samples[name] | TARGET_LABELS
        known |= have
        out.extend(f"{name} has no label {lab!r}" for lab in sorted(labels - have))
        if q.label_values is not None and q.label_values not in have:
            out.append(f"label_values: {name} has no label {q.label_values!r}")
    out.extend(
        f"no metric of the expression has the grouping label {lab!r}"
        for lab in sorted(q.grouping - known)
    )
    return [f"{p} (in {q.expr!r})" for p in out]


# -- the dashboard -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def graph_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but rows (those nested in collapsed rows included)."""
    out: list[dict[str, Any]] = []
    for p in dash["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def dashboard_queries(dash: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and query variables."""
    exprs = [t["expr"] for p in graph_panels(dash) for t in p["targets"]]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            query = v["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


_VAR_USE = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)")


def test_the_dashboard_is_importable_and_consistent(dashboard: dict[str, Any]) -> None:
    """Valid JSON with unique panel ids, a data source and a target on every panel, a layout
    that fits 24 columns without overlaps, and a definition for every `$var` it uses."""
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard.get("id") is None, "an exported dashboard has no id (import assigns one)"
    ids = [p["id"] for p in dashboard["panels"]] + [
        p["id"] for p in dashboard["panels"] if p["type"] == "row" for p in p.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    occupied: dict[tuple[int, int], str] = {}
    for p in dashboard["panels"] + [q for r in dashboard["panels"] for q in r.get("panels", [])]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) and g[k] >= 0 for k in "hwxy"), p["title"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in occupied, f"{p['title']!r} overlaps {occupied[(x, y)]!r}"
                occupied[(x, y)] = p["title"]
    titles = [p["title"] for p in graph_panels(dashboard)]
    assert len(titles) == len(set(titles)), "panel titles are unique (the README lists them)"
    for p in graph_panels(dashboard):
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], f"{p['title']!r} has no target"
        assert p.get("description"), f"{p['title']!r} has no description"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert len(variables) == len(dashboard["templating"]["list"])
    ds = variables["DS_PROMETHEUS"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE, v["name"]
            assert v["query"]["query"].startswith("label_values("), v["name"]
            assert v["definition"] == v["query"]["query"], v["name"]  # what Grafana shows
            # "All" must also match the empty consumer_group of sends.
            assert not v.get("includeAll") or v.get("allValue") == ".*", v["name"]
    used = {
        next(g for g in m.groups() if g)
        for s in _strings(dashboard["panels"] + dashboard["templating"]["list"])
        for m in _VAR_USE.finditer(s)
    }
    undefined = {u for u in used if not u.startswith("__")} - set(variables)
    assert not undefined, f"variables used but not defined: {sorted(undefined)}"
    for expr in dashboard_queries(dashboard):
        parse_promql(expr)  # every expression is readable (and uses known functions only)


def test_the_readme_lists_every_row_and_panel(dashboard: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Grafana dashboard") :]
    section = section[: section.index("\n## ", 1)]
    assert "contrib/grafana/rmqfast.json" in section
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    missing = [r for r in rows if f"**{r}**" not in section]
    missing += [p["title"] for p in graph_panels(dashboard) if f"| {p['title']} |" not in section]
    assert not missing, f"rows or panels missing from the README's Grafana section: {missing}"


# -- the checker catches what it should ---------------------------------------------------------

FAKE_METRICS = """\
# TYPE rmqfast_proxy_request_total counter
rmqfast_proxy_request_total 7
# TYPE rmqfast_topic_request_duration_seconds histogram
rmqfast_topic_request_duration_seconds_bucket{topic="T",broker="b",le="0.5"} 1
rmqfast_topic_request_duration_seconds_bucket{topic="T",broker="b",le="+Inf"} 1
rmqfast_topic_request_duration_seconds_sum{topic="T",broker="b"} 0.1
rmqfast_topic_request_duration_seconds_count{topic="T",broker="b"} 1
# TYPE rmqfast_topic_errors_total counter
# TYPE rmqfast_logger_messages_total counter
rmqfast_logger_messages_total{name="x, y=\\"z\\""} 3
"""


def test_the_promql_reader_finds_names_and_labels() -> None:
    q = parse_promql(
        "histogram_quantile(0.99, sum by (le, topic) (rate(rmqfast_topic_request_duration_seconds"
        '_bucket{instance=~"$instance", topic=~"a|b{c}"}[$__rate_interval])))'
    )
    assert q.selectors == [("rmqfast_topic_request_duration_seconds_bucket", {"instance", "topic"})]
    assert q.grouping == {"le", "topic"}
    q = parse_promql("sum(rate(a_total[5m])) without (x) / on (y) group_left b_total > bool 0")
    assert [s[0] for s in q.selectors] == ["a_total", "b_total"] and q.grouping == {"x", "y"}
    q = parse_promql('label_values(rmqfast_logger_messages_total{job=~"$job"}, name)')
    assert q.selectors == [("rmqfast_logger_messages_total", {"job"})] and q.label_values == "name"
    with pytest.raises(ValueError, match="unknown function"):
        parse_promql("rat(rmqfast_proxy_request_total[5m])")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum(rate(rmqfast_proxy_request_totl[5m]))", "rmqfast_proxy_request_totl is not in"),
        (
            'rmqfast_proxy_request_total{code="X"}',
            "rmqfast_proxy_request_total has no label 'code'",
        ),
        ("sum by (topicc) (rmqfast_topic_request_duration_seconds_count)", "label 'topicc'"),
        ("rate(rmqfast_topic_errors_total[5m])", "rmqfast_topic_errors_total has no samples"),
        ("rate(rmqfast_logger_messages_bucket[5m])", "rmqfast_logger_messages is not a histogram"),
        ("label_values(rmqfast_logger_messages_total, reason)", "has no label 'reason'"),
        ('rmqfast_topic_request_duration_seconds_sum{le="1"}', "has no label 'le'"),
    ],
)
def test_the_checker_reports_what_metrics_lack(expr: str, expected: str) -> None:
    found = problems(parse_promql(expr), Scrape.parse(FAKE_METRICS))
    assert any(expected in p for p in found), found


def test_the_checker_accepts_what_metrics_have() -> None:
    scrape = Scrape.parse(FAKE_METRICS)
    assert scrape.samples["rmqfast_logger_messages_total"] == {"name"}
    for expr in (
        "histogram_quantile(0.5, sum by (le, topic, instance) (rate(rmqfast_topic_request_duration"
        '_seconds_bucket{broker=~"$broker"}[5m])))',
        'sum by (name) (rate(rmqfast_logger_messages_total{job="j"}[5m])) / '
        "sum(rate(rmqfast_proxy_request_total[5m]))",
        "label_values(rmqfast_topic_request_duration_seconds_count, broker)",
    ):
        assert problems(parse_promql(expr), scrape) == []


# -- against a real proxy and logger --------------------------------------------------------------


def scrape_metrics(proxy: Proxy) -> str:
    with urllib.request.urlopen(f"http://{proxy.admin_addr}/metrics", timeout=10) as r:
        text: str = r.read().decode()
    return text


def test_every_metric_and_label_the_dashboard_queries_is_in_metrics(
    rocketmq: DevCluster,
    dashboard: dict[str, Any],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Traffic through an in-process proxy (a Java producer and push consumer, a
    RocketMQLogger, a request the policy refuses, a pull the broker refuses), then every
    expression of the dashboard against what /metrics serves."""
    topic, log_topic = new_topic("grafana"), new_topic("grafana_log")
    for t in (topic, log_topic):
        create_topic(rocketmq.brokers, rocketmq.namesrv_addr, t)
    group = f"grafana_cg_{uuid.uuid4().hex[:8]}"
    cache = getattr(request.config, "cache", None)
    build = cache.mkdir("rmqfast-java") if cache is not None else tmp_path / "build"
    java = JavaTools(rocketmq.lib_dir, build, tmp_path)
    config = {"namesrv": rocketmq.namesrv_addr, "listen": "127.0.0.1:0", "admin": "127.0.0.1:0"}
    with (
        Proxy(config) as proxy,
        RocketMQLogger([proxy.namesrv_addr], log_topic, name="grafana-it") as logger,
    ):
        entries = 20
        for i in range(entries):
            assert logger.log({"i": i})
        r = java.run(
            "Producer",
            {"namesrv": proxy.namesrv_addr, "topic": topic, "group": "grafana_pg", "sync": 4},
        ).result
        sent = sum(len(k) for k in r["keys"].values())
        with java.start(
            "PushConsumer",
            {"namesrv": proxy.namesrv_addr, "topic": topic, "group": group, "expect": sent},
        ) as c:
            assert c.expect("DONE", 120)["deliveries"] >= sent
            c.finish(60)
        assert logger.flush(30)
        # A request the default policy refuses (creating topics is an operator's job).
        with RemotingClient(proxy.namesrv_addr) as ns:
            denied = ns.request(RequestCode.UPDATE_AND_CREATE_TOPIC, create_topic_fields(topic))
        assert denied.code == ResponseCode.NO_PERMISSION, denied
        # A pull of a queue the topic does not have: an error response counted for the topic.
        broker = proxy.open_broker(rocketmq.brokers["broker-a"])
        with RemotingClient(broker) as b:
            bad = b.request(RequestCode.PULL_MESSAGE, pull_fields(group, topic, 99, 0))
        assert bad.code not in (ResponseCode.SUCCESS, ResponseCode.PULL_NOT_FOUND), bad

        # What this traffic must have put in /metrics (a few series appear only once their
        # event has happened: a denial, a topic error, a consumer group's messages out).
        mine = f'{{topic="{topic}",consumer_group="{group}",'
        wanted = [
            f"rocketmq_messages_out_total{mine}",
            f"rmqfast_topic_errors_total{mine}",
            'rmqfast_proxy_request_denied_by_code_total{code="UPDATE_AND_CREATE_TOPIC"} 1',
            f'rmqfast_logger_sent_total{{name="grafana-it"}} {entries}',
        ]

        def ready() -> Scrape | None:
            text = scrape_metrics(proxy)
            return Scrape.parse(text) if all(w in text for w in wanted) else None

        scrape = wait_until(ready, 30, f"{wanted} in /metrics", interval=0.1)

    found = [
        p for expr in dashboard_queries(dashboard) for p in problems(parse_promql(expr), scrape)
    ]
    assert not found, "the dashboard queries what /metrics lacks:\n" + "\n".join(found)
    # The same check fails on a misspelt metric or label of this very scrape.
    assert problems(parse_promql("rate(rmqfast_proxy_request_totl[5m])"), scrape)
    assert problems(parse_promql('rmqfast_topic_errors_total{topik="x"}'), scrape)
