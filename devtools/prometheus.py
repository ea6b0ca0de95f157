"""A local Prometheus for `mynapoint dev` and the integration tests.

Runs the `prometheus` binary (Debian's package; `./run setup` installs it) on loopback with its own
data directory and a copy of ops/prometheus.yml in which only what differs on one machine is
changed: the workers to scrape, the scrape and evaluation interval, and the alert rules' path (this
tree's ops/alerts.yml instead of the container's /etc/prometheus/alerts.yml).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from clients.connect import free_port
from devtools.brokers.process import stop_process

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"
#: The port a packaged Prometheus service listens on: a local one never takes it.
PACKAGED_PORT = 9090


class PrometheusError(Exception):
    """Prometheus cannot be started here; the message says why and what to do."""


def local_config(targets: list[str], interval: str) -> dict[str, Any]:
    """ops/prometheus.yml with `targets` as the workers, `interval` as the scrape and evaluation
    interval and this tree's ops/alerts.yml as the rule file."""
    config = yaml.safe_load((OPS / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update({"scrape_interval": interval, "evaluation_interval": interval})
    config["rule_files"] = [str(OPS / Path(f).name) for f in config["rule_files"]]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": targets}]
    return config


def a_free_port() -> int:
    """A free loopback port other than the packaged service's."""
    port = free_port()
    while port == PACKAGED_PORT:
        port = free_port()
    return port


class LocalPrometheus:
    def __init__(self, work: Path, targets: list[str], *, interval: str = "1s",
                 port: int | None = None):
        self.work = work
        self.targets = targets
        self.interval = interval
        self.port = port if port is not None else a_free_port()
        self.log = work / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> LocalPrometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("`prometheus` is not installed: run ./run setup (it installs "
                                  "Debian's prometheus package)")
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "prometheus.yml"
        config.write_text(yaml.safe_dump(local_config(self.targets, self.interval)),
                          encoding="utf-8")
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}",
                 f"--storage.tsdb.path={self.work / 'prometheus-data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise PrometheusError(f"Prometheus exited (code {self.process.returncode}): "
                                      f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"Prometheus not ready after {timeout:g} s: "
                                      f"{self.log_tail()}")
            time.sleep(0.2)  # polling readiness
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful answer of Prometheus's HTTP API (/api/v1/...)."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return body["data"]
