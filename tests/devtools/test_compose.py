"""docker-compose.yml and the Dockerfile against the code: Docker is not run here, so what can be
checked without it is checked here (the broker tests run the same Apache Kafka natively)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from cli.main import build_parser
from devtools.brokers.kafka import kafka_version
from schemas.settings import ENV

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
WORKERS = {name: s for name, s in SERVICES.items() if name.startswith("worker-")}
PROMETHEUS = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text(encoding="utf-8"))


def test_compose_runs_the_kafka_version_the_tests_run():
    image = SERVICES["kafka"]["image"]
    assert image == f"apache/kafka:{kafka_version()}"


def test_every_worker_variable_is_one_the_worker_reads():
    known = {s.var for s in ENV.values()}
    assert len(WORKERS) == 2
    for name, service in WORKERS.items():
        unknown = {k for k in service["environment"] if k.startswith("MYNAPOINT_")} - known
        assert not unknown, (name, unknown)
        assert set(service["environment"]) <= known, name


def test_workers_run_the_worker_command():
    parser = build_parser()
    for service in WORKERS.values():
        command = service["command"]
        assert command[0] == "mynapoint"
        args = parser.parse_args(command[1:])
        assert args.func is not None and command[1] == "worker"


def test_workers_reach_kafka_on_its_advertised_listener():
    kafka = SERVICES["kafka"]["environment"]
    advertised = {urlsplit(u).netloc for u in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for service in WORKERS.values():
        assert service["environment"]["MYNAPOINT_BOOTSTRAP"] in advertised


def test_partitions_agree():
    kafka = SERVICES["kafka"]["environment"]
    for service in WORKERS.values():
        assert int(service["environment"]["MYNAPOINT_PARTITIONS"]) == int(kafka["KAFKA_NUM_PARTITIONS"])


def test_each_worker_advertises_its_own_status_api_address():
    for name, service in WORKERS.items():
        env = service["environment"]
        url = urlsplit(env["MYNAPOINT_WEB_CANONICAL_URL"])
        assert url.hostname == name
        assert url.port == int(env["MYNAPOINT_WEB_PORT"])
        assert env["MYNAPOINT_WEB_HOST"] == "0.0.0.0"  # reachable from the other worker


def test_each_worker_is_a_static_member_under_its_own_name():
    # Two workers with one instance id would fence each other out of the group.
    ids = [s["environment"]["MYNAPOINT_INSTANCE_ID"] for s in WORKERS.values()]
    assert ids == list(WORKERS)
    for service in WORKERS.values():
        assert float(service["environment"]["MYNAPOINT_SESSION_TIMEOUT"]) > 10


def test_prometheus_scrapes_every_worker_on_its_metrics_port():
    targets = {t for job in PROMETHEUS["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    expected = {f"{name}:{s['environment']['MYNAPOINT_METRICS_PORT']}" for name, s in WORKERS.items()}
    assert targets == expected
    for service in WORKERS.values():
        assert service["environment"]["MYNAPOINT_METRICS_HOST"] == "0.0.0.0"


def test_the_image_holds_every_package_the_project_installs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages == copied


def test_each_worker_is_healthy_when_its_status_api_says_it_is_ready(tmp_path):
    # Docker runs the healthcheck's command in the worker's container; here it runs against a
    # server on the worker's web port's stand-in, answering as the probe does.
    import http.server
    import subprocess
    import sys
    import threading

    from streams.web.documents import READY_PATH

    answers = {"status": 200}

    class Probe(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answers["status"] if self.path == READY_PATH else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Probe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name, service in WORKERS.items():
            test = service["healthcheck"]["test"]
            assert test[:2] == ["CMD", "python"], name
            url = re.search(r"'(http://[^']+)'", test[-1]).group(1)
            assert urlsplit(url).port == int(service["environment"]["MYNAPOINT_WEB_PORT"])
            assert urlsplit(url).path == READY_PATH
            local = test[-1].replace(f":{urlsplit(url).port}/", f":{server.server_port}/")
            for status, healthy in ((200, True), (503, False)):
                answers["status"] = status
                done = subprocess.run([sys.executable, *test[2:-1], local], capture_output=True,
                                      timeout=60)
                assert (done.returncode == 0) is healthy, (name, status, done.stderr)
    finally:
        server.shutdown()
