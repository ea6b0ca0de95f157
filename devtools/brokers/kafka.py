"""A local Apache Kafka broker: the broker our users run, natively on loopback, without Docker.

A single node in KRaft mode (broker and controller in one JVM), from Apache Kafka's own jars. The
jars are resolved by Maven from Maven Central on first use, as `maven/pom.xml` beside this file
pins them (`kafka.version`), into `var/kafka/<version>/libs` of the checkout (git-ignored; or
`$MYNAPOINT_KAFKA_HOME/<version>/libs`). Needs a Java 17+ runtime, and Maven for that first
resolution; a missing one is a one-line message saying what to install.

    with KafkaBroker() as broker:          # free ports on 127.0.0.1, storage in a temp dir
        print(broker.bootstrap)            # "127.0.0.1:PORT"

Storage is formatted first, as `kafka-storage.sh format` does, in a temporary directory removed
on stop, or in `data_dir` (kept, and reused by the next start on it). `extra_config` adds or
overrides broker properties (tests use small segments and a fast log cleaner to see compaction);
`authorizer` turns ACLs on (`devtools.brokers.acls`).

`KafkaCluster` runs several such nodes as one cluster (their controllers a quorum), replicated as
production clusters are, so that a test can lose a broker:

    with KafkaCluster(3) as cluster:       # three replicas of every topic, two in sync
        cluster.nodes[0].process.kill()    # the others go on
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from clients.connect import free_port
from devtools.brokers.process import LOOPBACK, BrokerError, BrokerNotInstalled, BrokerProcess

HERE = Path(__file__).resolve().parent
POM = HERE / "maven" / "pom.xml"
LOG4J = HERE / "maven" / "log4j2.xml"
ENV_HOME = "MYNAPOINT_KAFKA_HOME"
"""Where resolved jars go (one folder per Kafka version); default: var/kafka of the checkout."""

JAVA_HINT = "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
MAVEN_HINT = "install Maven (Debian: apt-get install maven)"

#: A small JVM for a test broker on a 2-core machine: starts in about 1.5 s, about 160 MB.
JVM_OPTS = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k",
            "-XX:MaxMetaspaceSize=128m", "-Djava.awt.headless=true")

#: Single-node settings: replication 1 for every internal topic; no auto-created topics (every
#: topic is created with its configuration, as in production); short broker sessions, so a
#: broker restarted on its own data dir after a SIGKILL registers again within seconds.
BASE_CONFIG: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "inter.broker.listener.name": "PLAINTEXT",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": "8388608",
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "2000",
}


def kafka_version() -> str:
    """The Apache Kafka version the project runs: `kafka.version` of maven/pom.xml."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text(encoding="utf-8"))
    if match is None:
        raise BrokerError(f"{POM} names no <kafka.version>")
    return match.group(1).strip()


def jars_home() -> Path:
    override = os.environ.get(ENV_HOME)
    return Path(override) if override else HERE.parents[1] / "var" / "kafka"


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerNotInstalled(f"Apache Kafka needs Java and no `java` is on PATH: {JAVA_HINT}")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerNotInstalled(f"`java -version` failed ({exc}): {JAVA_HINT}") from None
    match = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if match is None or int(match.group(1)) < 17:
        found = match.group(1) if match else "unknown"
        raise BrokerNotInstalled(f"Apache Kafka {kafka_version()} needs Java 17 or newer, found "
                                 f"{found}: {JAVA_HINT}")
    return java


def resolve_jars() -> Path:
    """The folder of the broker's jars, resolving them with Maven first if they are not there.

    Resolution writes into a temporary folder renamed at the end, under a file lock: a resolution
    cut short leaves nothing that looks complete, and two processes never resolve at once.
    """
    version = kafka_version()
    home = jars_home() / version
    libs = home / "libs"
    if (libs / ".complete").is_file():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs / ".complete").is_file():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerNotInstalled(f"the Apache Kafka {version} jars are not resolved yet and "
                                     f"no `mvn` is on PATH to resolve them: {MAVEN_HINT}")
        partial = Path(tempfile.mkdtemp(prefix="libs-", dir=home))
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
               "dependency:copy-dependencies", f"-DoutputDirectory={partial}"]
        print(f"resolving Apache Kafka {version} from Maven Central into {libs} (first use) ...",
              file=sys.stderr, flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            shutil.rmtree(partial, ignore_errors=True)
            detail = (done.stdout + done.stderr).strip()[-1500:]
            raise BrokerError(f"Maven could not resolve Apache Kafka {version} ({POM}); its "
                              f"output:\n{detail}")
        (partial / ".complete").write_text(version + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    return libs


def _one_line(pem: str) -> str:
    """PEM text as one value of a properties file, where a newline is spelled "\\n"."""
    return pem.strip().replace("\n", "\\n")


def new_cluster_id() -> str:
    """16 random bytes, base64url without padding: what `kafka-storage random-uuid` prints."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaBroker(BrokerProcess):
    """A single-node Apache Kafka (KRaft) process on loopback; a context manager."""

    engine = "kafka"
    worker_flags = ()

    def __init__(self, port: int | None = None, *, data_dir: str | Path | None = None,
                 extra_config: dict[str, str] | None = None, stop_timeout: float = 30.0,
                 startup_timeout: float = 90.0, sasl_users: dict[str, str] | None = None,
                 tls: bool = False, authorizer: bool = False, node_id: int = 1,
                 voters: dict[int, int] | None = None, cluster_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(port, stop_timeout=stop_timeout, startup_timeout=startup_timeout,
                         **kwargs)
        # A node of a cluster (`KafkaCluster`): its id, every controller's port by node id (the
        # quorum), and the cluster's id its storage is formatted with.
        self.node_id, self.voters, self.cluster_id = node_id, voters, cluster_id
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._own_dir: Path | None = None
        self.extra_config = dict(extra_config or {})
        # SASL/PLAIN users (name -> password) of a second listener on its own port
        # (`sasl_bootstrap`), beside the plaintext one: what a secured cluster asks clients.
        # SASL_PLAINTEXT, or with `tls` SASL_SSL under a throwaway CA (`ca_file`, for clients).
        self.sasl_users = dict(sasl_users or {})
        self.sasl_port: int | None = None
        self.tls = tls
        self.ca_file: Path | None = None
        if tls and not self.sasl_users:
            raise BrokerError("tls=True secures the SASL listener: give sasl_users too")
        # ACLs (`devtools.brokers.acls`) hold the SASL listener's users; the plaintext and
        # controller listeners stay a super user's.
        if authorizer:
            from devtools.brokers.acls import AUTHORIZER_CONFIG

            self.extra_config = {**AUTHORIZER_CONFIG, **self.extra_config}

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL listener's address (a broker made with `sasl_users`): SASL_PLAINTEXT, or
        SASL_SSL with `tls`."""
        if self.sasl_port is None or self.port is None:
            raise BrokerError("the broker has no SASL listener (start it with sasl_users)")
        return f"{self.host}:{self.sasl_port}"

    def _listeners(self, port: int, controller: int) -> dict[str, str]:
        """The listeners' settings: PLAINTEXT on `port`, the controller's, and with `sasl_users`
        a listener named SASL (PLAIN mechanism) on a port of its own: SASL_PLAINTEXT, or with
        `tls` SASL_SSL, its certificate signed by a CA made for this broker (`ca_file`)."""
        listeners = f"PLAINTEXT://{self.host}:{port},CONTROLLER://{self.host}:{controller}"
        advertised = f"PLAINTEXT://{self.host}:{port}"
        if not self.sasl_users:
            return {"listeners": listeners, "advertised.listeners": advertised}
        if self.sasl_port is None:
            self.sasl_port = free_port(self.host)
        sasl = f"SASL://{self.host}:{self.sasl_port}"
        users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
        protocol = "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        config = {
            "listeners": f"{listeners},{sasl}",
            "advertised.listeners": f"{advertised},{sasl}",
            "listener.security.protocol.map":
                f"{BASE_CONFIG['listener.security.protocol.map']},SASL:{protocol}",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl.plain.sasl.jaas.config":
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
        }
        if self.tls:
            from devtools.brokers.certs import make_tls_files

            files = make_tls_files(self.storage() / "tls", self.host)
            self.ca_file = files.ca
            config |= {
                "listener.name.sasl.ssl.keystore.type": "PEM",
                "listener.name.sasl.ssl.keystore.key": _one_line(files.key_pem),
                "listener.name.sasl.ssl.keystore.certificate.chain": _one_line(files.chain_pem),
            }
        return config

    def storage(self) -> Path:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return self.data_dir
        if self._own_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="mynapoint-kafka-"))
        return self._own_dir

    def _java(self, java: str, libs: Path, main: str, *args: str) -> list[str]:
        return [java, *JVM_OPTS, "-cp", str(libs / "*"),
                f"-Dlog4j2.configurationFile={LOG4J}", main, *args]

    def prepare(self, port: int) -> list[str]:
        java = find_java()
        libs = resolve_jars()
        root = self.storage()
        logs = root / "kafka-logs"
        props = root / "server.properties"
        voters = self.voters or {self.node_id: free_port(self.host)}
        controller = voters[self.node_id]
        config = {
            **BASE_CONFIG,
            "node.id": str(self.node_id),
            "controller.quorum.voters": ",".join(f"{n}@{self.host}:{p}"
                                                 for n, p in sorted(voters.items())),
            **self._listeners(port, controller),
            "log.dirs": str(logs),
            "metadata.log.dir": str(logs),
            **self.extra_config,
        }
        props.write_text("".join(f"{k}={v}\n" for k, v in config.items()), encoding="utf-8")
        if not (logs / "meta.properties").is_file():
            # An id starting with "-" would be taken for an option by "-t ID": "--cluster-id=".
            done = subprocess.run(
                self._java(java, libs, "kafka.tools.StorageTool", "format",
                           f"--cluster-id={self.cluster_id or new_cluster_id()}", "-c",
                           str(props)),
                capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise BrokerError(f"formatting the Kafka storage in {logs} failed: "
                                  f"{(done.stdout + done.stderr).strip()[-1500:]}")
        return self._java(java, libs, "kafka.Kafka", str(props))

    def describe(self) -> str:
        where = self.data_dir if self.data_dir is not None else "a temporary directory"
        node = f"node {self.node_id} of {len(self.voters)}, " if self.voters else ""
        return f"Apache Kafka {kafka_version()} (KRaft, {node}storage in {where})"

    def cleanup(self) -> None:
        if self._own_dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._own_dir)
            self._own_dir = None


def cluster_config(size: int) -> dict[str, str]:
    """What a cluster of `size` nodes keeps as production does: three replicas of every topic
    (or `size`), two of them in sync for a write to count (or `size`), the broker's own topics
    too."""
    replicas, in_sync = str(min(size, 3)), str(min(size, 2))
    return {
        "default.replication.factor": replicas,
        "min.insync.replicas": in_sync,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": in_sync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": in_sync,
    }


class KafkaCluster:
    """Apache Kafka clusters of `size` KRaft nodes on loopback (each a broker and a controller,
    the controllers a quorum), replicated as `cluster_config` says; a context manager.

    `nodes` are `KafkaBroker`s: stop or kill one to see the cluster go on without it.
    `bootstrap` names them all, as clients are configured with a cluster's brokers. Keyword
    arguments go to each node (`extra_config` over `cluster_config`)."""

    engine = "kafka"
    worker_flags = ()

    def __init__(self, size: int = 3, *, extra_config: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        host = kwargs.get("host", LOOPBACK)
        voters = {node: free_port(host) for node in range(1, size + 1)}
        cluster_id = new_cluster_id()
        config = {**cluster_config(size), **(extra_config or {})}
        self.nodes = [KafkaBroker(node_id=node, voters=voters, cluster_id=cluster_id,
                                  extra_config=config, **kwargs) for node in voters]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self) -> KafkaCluster:
        """Starts every node at once (a node answers only once a quorum of controllers runs),
        and returns once each answers Kafka requests; stops them all if one does not start."""
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            done = [pool.submit(node.start) for node in self.nodes]
            errors = [exc for f in done if (exc := f.exception()) is not None]
        if errors:
            self.stop()
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stops every node at once: one by one, the last ones would wait out their stop
        timeout for a quorum of controllers that is gone."""
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            for done in [pool.submit(node.stop) for node in self.nodes]:
                done.result()

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
