"""The serving layer against real Kafka, Spark/Delta and Cassandra: merged answers (a batch version at cutoff A plus
speed rows of B after it) equal an independent aggregation of the generator's records, with each point's provenance;
the HTTP API, the CLI and the dashboard in a real Chromium; and, while a stream flows and batch versions are published
under running queries, every answer equals the aggregation up to the freshness point it reports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch.job import batch_context, new_run_id, run_all
from batch.stages import FULL
from schemas.contracts import rules
from schemas.views import default_views
from serving.main import create_serving_app, open_queries
from tests.speed.oracle import expected_views, per_key_totals
from tests.published_lake import SENT_A
from tests.speed.test_speed_job import Stream, _wait

pytestmark = [pytest.mark.services, pytest.mark.spark]


class Scene:
    """Records A are covered by a published batch version (cutoff A); records B only by the speed layer."""

    def __init__(self, stream: Stream, cutoff_a: int) -> None:
        self.stream, self.cutoff_a = stream, cutoff_a
        self.start = datetime.now(UTC) - timedelta(hours=4)  # the generator's late events reach 3 hours back
        self.end = datetime.now(UTC) + timedelta(minutes=10)

    @property
    def settings(self):
        return self.stream.settings

    def distinct(self, records) -> dict[str, dict]:
        return {r.event["event_id"]: r.event for r in records if r.event is not None}

    def expected(self) -> dict:
        return expected_views(list(self.distinct(self.stream.records).values()), default_views())

    def expected_sources(self) -> dict:
        """(view, key, window) -> batch | speed | both: which side holds a distinct event of the window."""
        in_a = self.distinct(self.stream.records[:SENT_A])
        only_b = {i: e for i, e in self.distinct(self.stream.records[SENT_A:]).items() if i not in in_a}
        a, b = expected_views(list(in_a.values()), default_views()), expected_views(list(only_b.values()), default_views())
        return {group: "both" if group in a and group in b else "batch" if group in a else "speed" for group in {**a, **b}}


@pytest.fixture(scope="module")
def scene(published_lake) -> Scene:
    """The session's published two-part lake (tests/published_lake.py), read only."""
    return Scene(published_lake.stream, published_lake.cutoff_a)


def _window(point_or_time) -> int:
    return int(point_or_time.timestamp())


def _keys_by_size(expected: dict, view: str, count: int) -> list[str]:
    windows = defaultdict(int)
    for name, key, _ in expected:
        if name == view:
            windows[key] += 1
    return sorted(windows, key=lambda k: (-windows[k], k))[:count]


def test_series_equal_the_oracle_with_each_points_provenance(scene: Scene) -> None:
    expected, sources = scene.expected(), scene.expected_sources()
    assert set(sources.values()) == {"batch", "speed", "both"}  # the scene exercises every provenance
    with open_queries(scene.settings) as queries:
        for view in default_views().values():
            for key in _keys_by_size(expected, view.name, 3):
                answer = queries.series(view.name, json.loads(key), scene.start, scene.end)
                got = {(view.name, key, _window(p.window_start)): p.metrics for p in answer.points}
                assert got == {group: metrics for group, metrics in expected.items() if group[:2] == (view.name, key)}
                assert {(view.name, key, _window(p.window_start)): p.source for p in answer.points} == {
                    group: source for group, source in sources.items() if group[:2] == (view.name, key)
                }
        fresh = answer.freshness
        assert fresh.batch_cutoff == scene.cutoff_a and fresh.speed_batch == scene.stream.progress().last_batch
        assert fresh.batch_covers_until == datetime.fromtimestamp((scene.cutoff_a + 1) * rules(scene.stream.settings.rules_file).handoff_bucket_seconds, UTC)


def test_series_roll_up_to_a_coarser_grain(scene: Scene) -> None:
    expected = scene.expected()
    view = default_views()["page_views_by_url"]
    key = _keys_by_size(expected, view.name, 1)[0]
    rolled: dict[int, int] = defaultdict(int)
    for (name, group_key, window), metrics in expected.items():
        if (name, group_key) == (view.name, key):
            rolled[window - window % 3600] += metrics["views"]
    with open_queries(scene.settings) as queries:
        answer = queries.series(view.name, json.loads(key), scene.start, scene.end, grain="1h")
    assert {_window(p.window_start): p.metrics["views"] for p in answer.points} == dict(rolled)


def test_top_equals_the_oracle_per_key(scene: Scene) -> None:
    expected = scene.expected()
    with open_queries(scene.settings) as queries:
        for view in default_views().values():
            metric = next(m.name for m in view.metrics if m.aggregate == "count")
            answer = queries.top(view.name, scene.start, scene.end, n=1000, metric=metric)
            totals = per_key_totals(expected, view)
            assert {json.dumps(e.key, separators=(",", ":"), ensure_ascii=False): e.metrics for e in answer.entries} == totals
            assert [e.value for e in answer.entries] == sorted((t[metric] for t in totals.values()), reverse=True)
            top3 = queries.top(view.name, scene.start, scene.end, n=3, metric=metric)
            assert [e.key for e in top3.entries] == [e.key for e in answer.entries[:3]]


def test_top_over_part_of_the_range_counts_only_its_windows(scene: Scene) -> None:
    # The speed rows are filtered to the range by Cassandra inside each bucket's partitions; late events put old
    # windows in new buckets, so a range that ends before the newest windows must still find them and nothing after.
    expected = scene.expected()
    with open_queries(scene.settings) as queries:
        for view in default_views().values():
            windows = sorted({window for name, _, window in expected if name == view.name})
            assert len(windows) >= 4, view.name
            for low, high in ((windows[len(windows) // 3], windows[2 * len(windows) // 3]), (windows[-2], windows[-1] + view.grain_seconds)):
                start, end = datetime.fromtimestamp(low, UTC), datetime.fromtimestamp(high, UTC)
                part = {group: metrics for group, metrics in expected.items() if low <= group[2] < high}
                answer = queries.top(view.name, start, end, n=1000, metric=view.metrics[0].name)
                assert {json.dumps(e.key, separators=(",", ":"), ensure_ascii=False): e.metrics for e in answer.entries} == per_key_totals(part, view), (
                    view.name, low, high)  # fmt: skip


def test_the_cli_prints_the_same_answers(scene: Scene) -> None:
    env = {**os.environ, **scene.stream.env}
    view = default_views()["payments_by_merchant"]
    key = json.loads(_keys_by_size(scene.expected(), view.name, 1)[0])
    args = ["series", view.name, *[part for value in key for part in ("--key", value)], "--start", scene.start.isoformat(), "--end", scene.end.isoformat()]
    as_json = subprocess.run([sys.executable, "-m", "braid.cli", "query", *args, "--json"], env=env, capture_output=True, text=True)
    assert as_json.returncode == 0, as_json.stderr
    with open_queries(scene.settings) as queries:
        answer = queries.series(view.name, key, scene.start, scene.end)
    printed = json.loads(as_json.stdout)
    assert [(p["window_start"], p["metrics"], p["source"]) for p in printed["points"]] == [
        (p.window_start.isoformat().replace("+00:00", "Z"), p.metrics, p.source) for p in answer.points
    ]
    table = subprocess.run([sys.executable, "-m", "braid.cli", "query", *args], env=env, capture_output=True, text=True).stdout.splitlines()
    assert table[0].startswith(f"freshness: batch version {answer.freshness.batch_version} (cutoff bucket {scene.cutoff_a}")
    assert len(table) == 2 + len(answer.points) and table[2].split()[-1] == answer.points[0].source
    bad = subprocess.run([sys.executable, "-m", "braid.cli", "query", "top", "nope"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("braid: query: view 'nope' is not declared")


# -- the HTTP API ---------------------------------------------------------------------------------------------------


@pytest.fixture
def client(scene: Scene):
    from fastapi.testclient import TestClient

    with open_queries(scene.settings) as queries:
        with TestClient(create_serving_app(scene.settings, queries)) as test_client:
            yield test_client


def test_api_answers_equal_the_library(scene: Scene, client) -> None:
    view = default_views()["page_views_by_country"]
    key = json.loads(_keys_by_size(scene.expected(), view.name, 1)[0])
    window = {"start": scene.start.isoformat(), "end": scene.end.isoformat()}
    with open_queries(scene.settings) as queries:
        series = queries.series(view.name, key, scene.start, scene.end)
        top = queries.top(view.name, scene.start, scene.end, 5, "views")
    got = client.get(f"/v1/views/{view.name}/series", params={"key": key, **window})
    assert got.status_code == 200
    assert [(p["metrics"], p["source"]) for p in got.json()["points"]] == [(p.metrics, p.source) for p in series.points]
    assert got.json()["freshness"]["batch_version"] == series.freshness.batch_version
    got = client.get(f"/v1/views/{view.name}/top", params={"n": "5", "metric": "views", **window})
    assert got.status_code == 200 and [e["key"] for e in got.json()["entries"]] == [e.key for e in top.entries]
    assert [v["name"] for v in client.get("/v1/views").json()["views"]] == list(default_views())
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/v1/views/{view}/series", "/v1/views/{view}/top", "/metrics", "/health"}
    assert "Braid" in client.get("/").text


@pytest.mark.parametrize(
    ("path", "params", "status", "reason"),
    [
        ("/v1/views/nope/series", {"key": "x"}, 404, "view 'nope' is not declared"),
        ("/v1/views/page_views_by_url/series", {"key": ["a", "b"]}, 400, "key must give 1 value(s) for url"),
        ("/v1/views/page_views_by_url/series", {"key": "x", "start": "yesterday"}, 400, "start 'yesterday' is not an ISO 8601 time"),
        ("/v1/views/page_views_by_url/series", {"key": "x", "start": "-1h", "end": "-2h"}, 400, "must be after start"),
        ("/v1/views/page_views_by_url/series", {"key": "x", "start": "-30d"}, 400, "windows of 1m; at most 10080 per query"),
        ("/v1/views/page_views_by_url/series", {"key": "x", "grain": "90s"}, 400, "not a whole multiple"),
        ("/v1/views/page_views_by_url/top", {"n": "ten"}, 400, "n must be a whole number, got 'ten'"),
        ("/v1/views/page_views_by_url/top", {"n": "0"}, 400, "n must be a whole number from 1 to 1000"),
        ("/v1/views/page_views_by_url/top", {"metric": "revenue"}, 400, "metric 'revenue' is not one of"),
    ],
)
def test_api_refuses_bad_parameters_with_a_reason(client, path: str, params: dict, status: int, reason: str) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code == status and reason in answer.json()["error"]


def test_metrics_are_prometheus_text_with_the_pipeline_figures(scene: Scene, client) -> None:
    client.get("/v1/views")
    text = client.get("/metrics").text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")}
    progress = scene.stream.progress()
    with open_queries(scene.settings) as queries:
        pointer = queries.store.pointer()
    assert values["braid_batch_version"] == pointer.version and values["braid_batch_cutoff_bucket"] == scene.cutoff_a
    assert values["braid_speed_last_batch"] == progress.last_batch
    malformed = sum(1 for r in scene.stream.records if r.event is None)
    assert sum(v for name, v in values.items() if name.startswith("braid_quarantined_records{")) == malformed
    assert values['braid_api_request_seconds_count{route="/v1/views",status="200"}'] >= 1
    assert "# TYPE braid_api_request_seconds histogram" in text
    status = client.get("/v1/freshness").json()
    assert (status["batch"]["version"], status["batch"]["cutoff"], status["speed"]["last_batch"]) == (pointer.version, scene.cutoff_a, progress.last_batch)
    assert sum(status["quarantine_recent"].values()) == malformed


def test_token_authentication(scene: Scene) -> None:
    from fastapi.testclient import TestClient

    from braid.settings import load_settings

    read, write = "read-token-0123456789abcdef", "write-token-0123456789abcdef"
    settings = load_settings(**scene.stream.overrides, api_read_token=read, api_write_token=write)
    with open_queries(settings) as queries, TestClient(create_serving_app(settings, queries)) as secured:
        assert secured.get("/v1/views").status_code == 401
        assert secured.get("/v1/views", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert secured.get("/metrics").status_code == 401
        assert secured.get("/v1/views", headers={"Authorization": f"Bearer {read}"}).status_code == 200
        assert secured.get("/metrics", headers={"Authorization": f"Bearer {write}"}).status_code == 200  # write includes read
        assert secured.get("/health").status_code == 200  # for load balancers: no token


# -- the dashboard in a real browser --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_dashboard_shows_the_merged_series_and_freshness_in_chromium(scene: Scene) -> None:
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    with open_queries(scene.settings) as queries:
        server = uvicorn.Server(uvicorn.Config(create_serving_app(scene.settings, queries), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        _wait(lambda: server.started, 30, "the API server")
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,900"):  # fmt: skip
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(f"http://127.0.0.1:{port}/?view=page_views_by_country")
            WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")
            key = json.loads(driver.find_element(By.ID, "key").get_attribute("value"))
            bars = driver.find_elements(By.CSS_SELECTOR, "#chart rect")
            answer = queries.series("page_views_by_country", key, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
            assert bars and len(bars) == len(answer.points)
            assert {bar.get_attribute("data-source") for bar in bars} == {p.source for p in answer.points}
            freshness = driver.find_element(By.ID, "freshness").text
            assert f"batch version {answer.freshness.batch_version}" in freshness
            assert "speed batch" in freshness and "speed lag (records)" in freshness
            quarantine = driver.find_element(By.ID, "quarantine").text
            assert all(reason in quarantine for reason in {r.expected_reason for r in scene.stream.records if r.event is None})
            assert driver.find_element(By.ID, "error").text == ""
            errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            assert errors == []
            screenshot = Path(scene.settings.home) / "screenshots" / "dashboard.png"
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        finally:
            driver.quit()
            server.should_exit = True
            thread.join(timeout=10)


# -- the invariant of DESIGN.md while the stream flows ---------------------------------------------------------------


@pytest.mark.xdist_group("serving-flow")  # shares no module fixture: a worker of its own can take it
def test_merged_answers_equal_the_oracle_at_their_freshness_point_while_the_stream_flows(spark, services, tmp_path: Path) -> None:
    """A background speed job consumes a stream produced in chunks; batch versions are published in between; queries
    run all along. Each answer must equal an independent aggregation of exactly the records up to its freshness point:
    the Kafka offsets the micro-batches up to the reported one had read (the producer knows each record's offset)."""
    from braid.producer import EventProducer
    from schemas.contracts import default_contracts
    from tests.speed.test_speed_job import _speed_process

    stream = Stream(services, tmp_path, seed=71, count=4500, max_offsets=1000)
    views = default_views()
    start, end = datetime.now(UTC) - timedelta(hours=4), datetime.now(UTC) + timedelta(minutes=30)
    coordinates: list[tuple[int, int]] = []  # (partition, offset) of every record, in production order
    answers, stop = [], threading.Event()
    # A query may meet Cassandra busy with a publish: the errors the API answers with a 503 ("not now") are counted
    # and reported; any other failure is kept and fails the test.
    unavailable: list[str] = []
    failures: list[BaseException] = []

    def query_loop() -> None:
        from serving.api import _unavailable_errors

        not_now = _unavailable_errors()
        with open_queries(stream.settings) as queries:
            while not stop.is_set():
                for view in views.values():
                    try:
                        answer = queries.top(view.name, start, end, n=1000, metric=view.metrics[0].name)
                    except not_now as error:
                        unavailable.append(f"{view.name}: {type(error).__name__}")
                        continue
                    except BaseException as error:
                        failures.append(error)
                        return
                    if answer.freshness.speed_batch is not None:
                        answers.append((view.name, answer))
                time.sleep(0.5)

    job = _speed_process(stream, tmp_path / "speed.log")
    thread = threading.Thread(target=query_loop, daemon=True)
    thread.start()
    published = set()
    try:
        producer = EventProducer(stream.settings.kafka_bootstrap_servers, stream.name, registry=default_contracts(), validator=None)
        for chunk in range(3):
            futures = [producer.send_raw(r.key, r.value) for r in stream.records[chunk * 1500 : (chunk + 1) * 1500]]
            producer.flush()
            coordinates += [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
            _wait(lambda: stream.progress() is not None and _consumed(stream, stream.progress().last_batch) == _ends(coordinates), 240, f"chunk {chunk} consumed")
            if chunk == 2:
                break  # the last chunk stays with the speed layer only
            with batch_context(stream.settings, log=lambda m: None) as context:
                # The next chunk may be consumed inside the bucket the last version stopped at, so wait until the
                # speed layer completes one past it (seconds with the test stack's 2 s buckets).
                pointer = context.store.pointer()
                cutoff = pointer.cutoff if pointer else -1
                _wait(lambda: (context.store.speed_complete_through() or -1) > cutoff, 150, f"a bucket past cutoff {cutoff}")
                published.add(run_all(spark, context, new_run_id(), None, FULL).version)
        producer.close()
        time.sleep(3)
    finally:
        stop.set()
        thread.join(timeout=60)
        subprocess.run([sys.executable, "-m", "braid.cli", "speed", "stop"], env={**os.environ, **stream.env}, capture_output=True)
        if job.poll() is None:
            job.terminate()
        job.wait(timeout=60)

    assert not failures, f"a query failed while the stream flowed: {failures[0]!r}"
    print(f"queries: {len(answers)} answered; {len(unavailable)} would have been 503s {unavailable[:5]}")
    assert len(unavailable) <= len(answers) // 10, f"too many queries refused: {unavailable}"
    assert len(published) >= 2, "the test must see several batch versions published while the stream flows"
    # The queries ran across every switch: answers before the first version and on each published one.
    assert {None, *published} <= {answer.freshness.batch_version for _, answer in answers}
    assert len({answer.freshness.speed_batch for _, answer in answers}) >= 3 and len(answers) >= 20
    by_offsets: dict[tuple, dict] = {}
    for view_name, answer in answers:
        reach = _consumed(stream, answer.freshness.speed_batch)
        key = tuple(sorted(reach.items()))
        if key not in by_offsets:
            included = [r for r, (p, o) in zip(stream.records, coordinates) if o <= reach.get(p, -1)]
            distinct = {r.event["event_id"]: r.event for r in included if r.event is not None}
            by_offsets[key] = expected_views(list(distinct.values()), views)
        expected = per_key_totals(by_offsets[key], views[view_name])
        got = {json.dumps(e.key, separators=(",", ":"), ensure_ascii=False): e.metrics for e in answer.entries}
        assert got == expected, f"{view_name} at batch version {answer.freshness.batch_version}, speed batch {answer.freshness.speed_batch}"


def _consumed(stream: Stream, through_batch: int) -> dict[int, int]:
    """The highest offset per partition the speed micro-batches up to `through_batch` read (from speed_batches)."""
    from braid.cassandra import cluster_from_settings

    cluster = cluster_from_settings(stream.settings)
    try:
        rows = cluster.connect(stream.keyspace).execute("SELECT batch_id, max_offsets FROM speed_batches WHERE job = 'speed'")
        reach: dict[int, int] = {}
        for row in rows:
            if row.batch_id <= through_batch:
                for partition, offset in (row.max_offsets or {}).items():
                    reach[int(partition)] = max(reach.get(int(partition), -1), offset)
        return reach
    finally:
        cluster.shutdown()


def _ends(coordinates: list[tuple[int, int]]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset in coordinates:
        ends[partition] = max(ends.get(partition, -1), offset)
    return ends
