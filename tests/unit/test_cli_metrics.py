"""`swarmlet metrics`: durations and steps, the table of an instant vector, the range chart, and
what the command prints for Prometheus's answers and errors (against a stand-in HTTP server that
answers as Prometheus's API does)."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from deploy import promql
from deploy.cli import main
from deploy.commands import metrics

INFO = [
    {"metric": {"instance": "172.20.0.3:9323", "hostname": "manager1"}, "value": [9, "1700000000.5"]},
    {"metric": {"instance": "172.20.0.6:9323", "hostname": "worker1"}, "value": [9, "1700000000.5"]},
]


@pytest.mark.parametrize(("text", "seconds"), [
    ("5m", 300), ("1h30m", 5400), ("1m30s", 90), ("500ms", 0.5), ("1d", 86400), ("2w", 1209600),
])
def test_durations_as_prometheus_writes_them(text: str, seconds: float) -> None:
    assert promql.parse_duration(text) == seconds
    assert promql.format_duration(seconds) == text


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1.5m", "5mm", "0s", "-5m", "5M"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        promql.parse_duration(text)


def test_step_is_a_duration_or_seconds_and_defaults_to_about_60_points() -> None:
    assert promql.parse_step("15s") == 15
    assert promql.parse_step("0.5") == 0.5
    with pytest.raises(ValueError):
        promql.parse_step("0")
    with pytest.raises(ValueError):
        promql.parse_step("soon")
    assert promql.default_step(300) == 5
    assert promql.default_step(30) == 1  # never below the scrape interval
    assert promql.default_step(3600) == 60


def test_hostnames_take_the_hostname_an_address_had_last() -> None:
    seen = [*INFO,
            {"metric": {"instance": "172.20.0.8:9323", "hostname": "worker3"}, "value": [9, "1700000050"]},
            {"metric": {"instance": "172.20.0.8:9323", "hostname": "worker4"}, "value": [9, "1700000090"]},
            {"metric": {"instance": "172.20.0.9:9323"}, "value": [9, "1700000090"]}]
    assert promql.hostnames(seen) == {
        "172.20.0.3:9323": "manager1", "172.20.0.6:9323": "worker1", "172.20.0.8:9323": "worker4",
    }


def test_vector_table_has_a_node_column_the_labels_and_the_value_in_node_order() -> None:
    result = [
        {"metric": {"__name__": "up", "instance": "172.20.0.6:9323", "job": "nodes"}, "value": [1, "0"]},
        {"metric": {"__name__": "up", "instance": "172.20.0.3:9323", "job": "nodes"}, "value": [1, "1"]},
    ]
    names = promql.hostnames(INFO)
    columns, rows = promql.vector_table(result, names)
    assert columns == ["NODE", "NAME", "INSTANCE", "JOB", "VALUE"]
    assert rows == [["manager1", "up", "172.20.0.3:9323", "nodes", "1"],
                    ["worker1", "up", "172.20.0.6:9323", "nodes", "0"]]
    # An aggregate has neither a name nor an instance: its labels and the value only.
    columns, rows = promql.vector_table([{"metric": {"state": "running"}, "value": [1, "6"]},
                                         {"metric": {"state": "pending"}, "value": [1, "2"]}], names)
    assert columns == ["STATE", "VALUE"]
    assert rows == [["pending", "2"], ["running", "6"]]


def test_sparkline_scales_between_min_and_max_and_leaves_gaps() -> None:
    samples = [(float(t), float(t)) for t in range(8)]
    assert promql.sparkline(samples, 0, 8, 8) == promql.BLOCKS
    assert promql.sparkline([(0, 1.0), (7, 1.0)], 0, 8, 8) == "█      █"
    assert promql.sparkline([(0, 0.0), (1, 0.0)], 0, 2, 2) == "▁▁"  # a constant 0 lies low
    assert promql.sparkline([], 0, 10, 4) == "    "
    assert promql.sparkline([(0, float("nan"))], 0, 1, 1) == " "


def test_chart_lines_name_each_series_with_its_node_and_its_min_max_last() -> None:
    series = [{"metric": {"__name__": "up", "instance": "172.20.0.6:9323", "job": "nodes"},
               "values": [[0, "1"], [1, "1"], [2, "0"], [3, "0"]]}]
    lines = promql.chart_lines(series, 0, 4, 4, promql.hostnames(INFO))
    assert lines == ['up{instance="172.20.0.6:9323", job="nodes"}  node worker1',
                     "  ██▁▁  min 0  max 1  last 0"]


class _Prometheus(http.server.BaseHTTPRequestHandler):
    """Answers /api/v1/query and /api/v1/query_range as Prometheus does, for a few queries."""

    def do_POST(self) -> None:
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        query = form["query"][0]
        status, body = 200, {"status": "success", "data": {"resultType": "vector", "result": []}}
        if query == promql.HOSTNAMES_QUERY:
            body["data"]["result"] = INFO
        elif query == "up" and self.path == "/api/v1/query":
            body["data"]["result"] = [
                {"metric": {"__name__": "up", "instance": i["metric"]["instance"], "job": "nodes"},
                 "value": [1, "1"]} for i in INFO]
        elif query == "up" and self.path == "/api/v1/query_range":
            start, end = float(form["start"][0]), float(form["end"][0])
            body["data"] = {"resultType": "matrix", "result": [
                {"metric": {"__name__": "up", "instance": "172.20.0.6:9323", "job": "nodes"},
                 "values": [[start, "1"], [end, "0"]]}]}
        elif query == "1+1":
            body["data"] = {"resultType": "scalar", "result": [1, "2"]}
        elif query == "up{":
            status = 400
            body = {"status": "error", "errorType": "bad_data",
                    "error": '1:4: parse error: unexpected end of input inside braces'}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(metrics, "_base_url", lambda: url)
    yield url
    server.shutdown()
    server.server_close()


def test_instant_query_prints_a_table_with_the_nodes(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["metrics", "up"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NODE", "NAME", "INSTANCE", "JOB", "VALUE"]
    assert lines[1].split() == ["manager1", "up", "172.20.0.3:9323", "nodes", "1"]
    assert lines[2].split() == ["worker1", "up", "172.20.0.6:9323", "nodes", "1"]


def test_range_query_prints_a_chart(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", "up", "--range", "1m", "--step", "5s"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("up: 1 series, ") and out[0].endswith("(1m, step 5s)")
    assert out[1] == 'up{instance="172.20.0.6:9323", job="nodes"}  node worker1'
    assert out[2].strip().startswith("█") and out[2].endswith("min 0  max 1  last 0")


def test_scalar_and_empty_answers(prometheus: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", "1+1"]) == 0
    assert capsys.readouterr().out == "2\n"
    assert main(["metrics", "nothing_here"]) == 0
    assert capsys.readouterr().out == "Empty query result\n"


def test_a_bad_query_prints_prometheuss_own_error(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["metrics", "up{"]) == 1
    err = capsys.readouterr().err
    assert "Error executing query: 1:4: parse error: unexpected end of input inside braces" in err


def test_bad_arguments_are_refused_before_asking(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", "up", "--range", "5 minutes"]) == 1
    assert "invalid duration '5 minutes'" in capsys.readouterr().err
    assert main(["metrics", "up", "--step", "5s"]) == 1
    assert "--step goes with --range" in capsys.readouterr().err
    assert main(["metrics", "up", "--range", "1d", "--step", "1s"]) != 0
    assert "more than 11,000 points" in capsys.readouterr().err


def test_nothing_listening_says_prometheus_is_not_up(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(metrics, "_base_url", lambda: "http://127.0.0.1:9")  # discard: nothing listens
    assert main(["metrics", "up"]) == 1
    assert "Prometheus is not up at http://127.0.0.1:9" in capsys.readouterr().err
