"""A secured cluster: SASL/PLAIN on a listener of its own, over TLS under a throwaway CA
(`devtools.brokers.certs`) or not. The workers of both engines and `mynapoint produce` connect
with the SASL/TLS settings they are given (`schemas.settings.aiokafka_security` for everything
made with aiokafka), everything they make of their own included (the topics, the state's
changelogs), and decide as `simulate`; `rescale` and `takeover` run over SASL_SSL alone; a worker or
`produce` the broker refuses says what to check and exits 2. And with ACLs: a user who may not
read a topic's settings (DescribeConfigs).

Before, a worker made its topics with a client that ignored its SASL flags, so it stopped at
start-up with aiokafka's "Unable to bootstrap" traceback on any secured cluster, and `mynapoint
produce` read no SASL settings at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.admin import topic_errors, topic_names
from clients.connect import run_blocking
from clients.history import read_topics
from clients.offline import state_topics
from devtools.brokers import BrokerProcess
from devtools.brokers.acls import Acl, create_acls, everything_for, worker_acls
from schemas import topics
from schemas.settings import ENGINES
from tests.integration.test_kafka import _assert_as_simulate, _expect, _sorted_history
from tests.integration.test_pipeline import DEMO_CONFIG, Outcomes
from tests.integration.test_rescale import APP_ID, _rescale
from tests.integration.workers import ROOT, WorkerProcess, refused_start, wait_for

pytestmark = pytest.mark.engines("kafka")

USER, PASSWORD = "alice", "alice-secret"


@pytest.fixture
def secured_broker(make_test_broker) -> Iterator[BrokerProcess]:
    """Apache Kafka with a SASL_PLAINTEXT listener (PLAIN, one user) beside its plaintext one,
    which only the test's own readers use."""
    with make_test_broker(sasl_users={USER: PASSWORD}) as broker:
        yield broker


@pytest.fixture
def tls_broker(make_test_broker) -> Iterator[BrokerProcess]:
    """The same with SASL_SSL: what a production cluster asks of its clients."""
    with make_test_broker(sasl_users={USER: PASSWORD}, tls=True) as broker:
        yield broker


@pytest.fixture
def acl_broker(make_test_broker) -> Iterator[BrokerProcess]:
    """The SASL_PLAINTEXT broker with ACLs: its user may do everything but read the journal's
    settings (DescribeConfigs), as a cluster whose operators grant each operation by name
    might leave it."""
    with make_test_broker(sasl_users={USER: PASSWORD}, authorizer=True) as broker:
        create_acls(broker.bootstrap, [
            *everything_for(f"User:{USER}"),
            Acl("deny", f"User:{USER}", "describe_configs", "topic", topics.JOURNAL)])
        yield broker


def _sasl_flags(password: str = PASSWORD, cafile: Path | None = None) -> list[str]:
    flags = ["--sasl-mechanism", "PLAIN", "--sasl-username", USER, "--sasl-password", password]
    return flags + (["--ssl-cafile", str(cafile)] if cafile else [])


def _sasl_env(password: str = PASSWORD, cafile: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "MYNAPOINT_SASL_MECHANISM": "PLAIN", "MYNAPOINT_SASL_USERNAME": USER,
           "MYNAPOINT_SASL_PASSWORD": password}
    return env | ({"MYNAPOINT_SSL_CAFILE": str(cafile)} if cafile else {})


def _produce(bootstrap: str, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "produce", "--bootstrap", bootstrap,
                           str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def _decides_over_sasl(broker: BrokerProcess, tmp_path: Path, engine: str, *, people: int,
                       seed: int, cafile: Path | None = None,
                       extra: tuple[str, ...] = ()) -> WorkerProcess:
    """A worker told only the SASL listener, and `produce` over it: the worker decides a history
    of `people` as `simulate` does. Returns the worker, stopped."""
    lines = _sorted_history(people, seed=seed)
    expected, contended, wanted = _expect(lines)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    logs = tmp_path / "logs"
    logs.mkdir()
    # A later --bootstrap wins over the harness's.
    worker = WorkerProcess(broker, tmp_path / "data", logs, config=DEMO_CONFIG, engine=engine,
                           extra_args=["--bootstrap", broker.sasl_bootstrap,
                                       *_sasl_flags(cafile=cafile), *extra]).start()
    try:
        # The worker makes its topics through the SASL listener, or stops saying why.
        wait_for(lambda: topics.DECISIONS in topic_names(broker.bootstrap), 120,
                 "the worker's topics", worker=worker)
        done = _produce(broker.sasl_bootstrap, events, _sasl_env(cafile=cafile))
        assert done.returncode == 0, done.stderr
        assert f"sent to {broker.sasl_bootstrap}: {len(lines)} events" in done.stderr
        published = Outcomes(broker.bootstrap).until_ids(wanted, 600, worker, expected)
        _assert_as_simulate(published, expected, contended)
    finally:
        worker.stop()
    return worker


def test_a_worker_and_produce_over_sasl_and_tls_decide_as_simulate(tls_broker, tmp_path,
                                                                   worker_engine):
    ca = tls_broker.ca_file
    worker = _decides_over_sasl(tls_broker, tmp_path, worker_engine, people=300, seed=71,
                                cafile=ca)
    # The offline commands take the same settings from the environment: `rescale`, which reads,
    # makes and writes topics with its own clients, over SASL_SSL only.
    before = _partition_counts(tls_broker.bootstrap)
    assert worker.app_id == APP_ID
    rescale = _rescale(tls_broker.sasl_bootstrap, tmp_path / "rescale.state",
                       env=_sasl_env(cafile=ca))
    assert rescale.returncode == 0, rescale.stdout + rescale.stderr
    assert "rescaled from 4 to 8 partitions" in rescale.stdout, rescale.stdout
    # Every topic of the app from 4 to 8; Faust's own (its assignor's, 1) as it was.
    assert max(before.values()) == 4
    assert _partition_counts(tls_broker.bootstrap) == {
        t: 8 if n == 4 else n for t, n in before.items()}
    # ... and `takeover`, to the other engine's changelogs.
    other = next(e for e in ENGINES if e != worker_engine)
    takeover = subprocess.run(
        [sys.executable, "-m", "cli.main", "takeover", "--to", other, "--bootstrap",
         tls_broker.sasl_bootstrap, "--app-id", worker.app_id],
        cwd=ROOT, env=_sasl_env(cafile=ca), capture_output=True, text=True, timeout=600)
    assert takeover.returncode == 0, takeover.stdout + takeover.stderr
    assert f"took over the state from {worker_engine} to {other} (8 partitions)" in takeover.stdout
    present = topic_names(tls_broker.bootstrap)
    assert set(state_topics(other, worker.app_id).values()) <= present
    assert not set(state_topics(worker_engine, worker.app_id).values()) & present


def test_a_worker_the_broker_refuses_says_what_to_check(secured_broker, tmp_path, worker_engine):
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = WorkerProcess(secured_broker, tmp_path / "data", logs, engine=worker_engine,
                           extra_args=["--bootstrap", secured_broker.sasl_bootstrap,
                                       *_sasl_flags("not-the-password")]).start()
    assert worker.process is not None
    assert worker.process.wait(timeout=120) == 2, worker.log_tail()
    said = worker.log_tail()
    assert "Authentication failed" in said, said  # aiokafka's own words, logged first
    assert f"cannot reach a Kafka broker at {secured_broker.sasl_bootstrap}" in said, said
    assert "--sasl-username, --sasl-password" in said, said
    assert "Traceback" not in said, said


def test_produce_the_broker_refuses_says_what_to_check(secured_broker, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in _sorted_history(5, seed=72)))
    done = _produce(secured_broker.sasl_bootstrap, events, _sasl_env("not-the-password"))
    assert done.returncode == 2, done.stderr
    assert f"cannot reach a Kafka broker at {secured_broker.sasl_bootstrap}" in done.stderr
    assert "MYNAPOINT_SASL_USERNAME" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.workers("faust")
def test_a_worker_that_may_not_read_the_journals_settings_warns_and_decides(acl_broker, tmp_path,
                                                                            worker_engine):
    """A Faust worker starts without the settings check of a topic it may not describe, and says
    which settings to check by hand; `rescale`, which makes that topic again with its settings,
    stops before changing anything."""
    worker = _decides_over_sasl(acl_broker, tmp_path, worker_engine, people=200, seed=73)
    said = worker.log_tail(n=1_000_000)
    assert f"the settings of {topics.JOURNAL} were not checked" in said, said[-3000:]
    assert "Topic authorization failed" in said and "retention.ms=-1" in said

    counts = _partition_counts(acl_broker.bootstrap)
    assert worker.app_id == APP_ID
    rescale = _rescale(acl_broker.sasl_bootstrap, tmp_path / "rescale.state", env=_sasl_env())
    assert rescale.returncode == 2, rescale.stdout + rescale.stderr
    assert f"cannot read the settings of {topics.JOURNAL} (error 29" in rescale.stderr
    assert "nothing was changed" in rescale.stderr
    assert _partition_counts(acl_broker.bootstrap) == counts


@pytest.mark.workers("quix")
def test_a_quix_worker_that_may_not_read_a_topics_settings_says_so(acl_broker, tmp_path,
                                                                   worker_engine):
    """Quix Streams reads the settings of every topic it uses when it starts, and stopped with a
    traceback where an ACL kept it from one; the worker now refuses before, saying what to
    allow."""
    said = refused_start(acl_broker, tmp_path, engine=worker_engine,
                         extra_args=["--bootstrap", acl_broker.sasl_bootstrap, *_sasl_flags()])
    assert f"settings of {topics.JOURNAL} (error 29" in said, said
    assert "Quix Streams reads the settings of every topic it uses" in said, said
    assert f"--allow-principal User:{USER} --operation DescribeConfigs" in said, said
    assert "Traceback" not in said, said


def _partition_counts(bootstrap: str) -> dict[str, int]:
    """Every topic's partition count but the broker's own (`__consumer_offsets`, ...)."""
    names = sorted(t for t in topic_names(bootstrap) if not t.startswith("__"))
    dump = run_blocking(read_topics(bootstrap, [], optional=names, tail=0))
    return {t: dump.partitions[t] for t in names}


CREATE_LINE = re.compile(r"^  kafka-topics\.sh --bootstrap-server (\S+) --create --topic (\S+) "
                         r"--partitions (\d+) --replication-factor (\d+)((?: --config \S+)*)$",
                         re.MULTILINE)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_worker_that_may_not_create_topics_says_which_to_make(make_test_broker, tmp_path,
                                                                worker_engine, guarantee):
    """Refused, the worker names every topic it misses with the `kafka-topics.sh` line that makes
    it, in one round (a Quix worker's changelogs with the counts their sources get); made as
    those lines say, by another principal, the worker decides as `simulate` without creating
    anything itself, and neither does its engine (before `declare_only_missing_topics`, Faust
    asked to create its leader topic, which exists, and the worker stopped with
    `TopicAuthorizationFailedError`), with only the ACLs of `worker_acls` (no Create; nothing on
    the cluster but, for exactly-once's transactions, idempotent writes), and `produce` with the
    same."""
    with make_test_broker(sasl_users={USER: PASSWORD}, authorizer=True) as broker:
        create_acls(broker.bootstrap, worker_acls(f"User:{USER}",
                                                  exactly_once=guarantee == "exactly_once"))
        _made_as_told_then_decides(broker, tmp_path, worker_engine,
                                   ("--processing-guarantee", guarantee))


def _made_as_told_then_decides(broker: BrokerProcess, tmp_path: Path, engine: str,
                               extra: tuple[str, ...]) -> None:
    flags = ["--bootstrap", broker.sasl_bootstrap, *_sasl_flags(), *extra]
    said = refused_start(broker, tmp_path, engine=engine, extra_args=flags)
    assert "this client may not create topics" in said, said
    lines = CREATE_LINE.findall(said)
    named = {name for _, name, *_ in lines}
    assert {topics.JOURNAL, topics.CLAIMS, *state_topics(engine, APP_ID).values()} <= named, said
    _make_as_told(broker, lines)
    _decides_over_sasl(broker, tmp_path, engine, people=150, seed=74, extra=extra)


def _make_as_told(broker: BrokerProcess, lines: list[tuple[str, ...]]) -> None:
    """What a platform team does with the lines: the topics made through the broker's own
    listener (a super user's)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def make() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            new = []
            for bootstrap, name, partitions, replicas, configs in lines:
                assert bootstrap == broker.sasl_bootstrap
                settings = dict(c.split("=", 1) for c in configs.split(" --config ") if c)
                new.append(NewTopic(name, int(partitions), int(replicas),
                                    topic_configs=settings))
            response = await admin.create_topics(new)
            assert [e for e in topic_errors(response) if e[1]] == [], new
        finally:
            await admin.close()

    run_blocking(make())
