"""Static membership (`--instance-id`) on Apache Kafka, with either engine: a worker stopped and
started again with its instance id, within the session timeout, gets its partitions back and the
other worker of the group goes on without a rebalance (`mynapoint_partition_assignments_total`
does not move); the history is still decided per person as `simulate` decides it. A Faust worker
that comes back under another status API address has the group rebalance once, so the others
learn it (`agents.faust_private.rejoining_assignor`); before, it hung. Of two Faust workers started
with one instance id, the one the broker fences stops and says why; before, it stayed alive,
deciding nothing (a fenced Quix worker stops on librdkafka's fatal error).

Without an instance id the same restart rebalances the group twice (the stopped worker leaves,
the started one joins), and the other worker's counter goes up by 2: that is what the assertion
on it would catch. The session timeout is not what is tested: it is set far beyond how long a
restart takes, so that the broker never drops the stopped worker on its own.

Contended people are left out of the per-person comparison, as in every broker test
(tests/integration/test_kafka.py says why).
"""

from __future__ import annotations

import pytest

from clients.connect import free_port
from tests.integration.test_kafka import _assert_as_simulate, _expect, _produce, _sorted_history
from tests.integration.test_metrics import scrape
from tests.integration.test_pipeline import DEMO_CONFIG, Outcomes
from tests.integration.workers import WorkerProcess, wait_for

pytestmark = pytest.mark.engines("kafka")

ASSIGNMENTS = ("mynapoint_partition_assignments_total", ())


def _assignments(port: int) -> float:
    return scrape(port).get(ASSIGNMENTS, 0.0)


def _restart_one_of_two(broker, tmp_path, engine: str, *, same_address: bool) -> float:
    """Two static members decide half a history; the first is stopped and started again (under
    the same status API address, or another), then the rest is sent. Checks the outcomes against
    `simulate` and returns by how much the other worker's assignment count moved."""
    bootstrap = broker.bootstrap
    lines = _sorted_history(800, seed=61)
    expected, contended, wanted = _expect(lines)
    half = len(lines) // 2
    ports = [free_port(), free_port()]
    workers = []
    for i, port in enumerate(ports):
        logs = tmp_path / f"logs-{i}"
        logs.mkdir()
        # A worker keeps its address across restarts when its web port is given here (the last
        # --web-port wins); otherwise each start takes a fresh one.
        address = ["--web-port", str(free_port())] if same_address else []
        workers.append(WorkerProcess(
            broker, tmp_path / f"data-{i}", logs, config=DEMO_CONFIG, engine=engine,
            extra_args=["--instance-id", f"worker-{i}", "--session-timeout", "300",
                        "--metrics-port", str(port), *address]))
    restarted, other = workers
    try:
        for w in workers:
            w.start()
        sent = _produce(bootstrap, lines[:half])
        Outcomes(bootstrap).until_decisions(sent, 600, other)
        # Both workers hold partitions: each took part in the group's last rebalance.
        wait_for(lambda: all(_assignments(p) >= 1 for p in ports), 120,
                 "both workers assigned", worker=other)
        before = _assignments(ports[1])

        restarted.stop()  # SIGTERM: the worker stops as in a rolling restart
        restarted.start()
        sent += _produce(bootstrap, lines[half:])
        published = Outcomes(bootstrap).until_ids(wanted, 900, restarted, expected)
        _assert_as_simulate(published, expected, contended)

        other.assert_alive()
        return _assignments(ports[1]) - before
    finally:
        for w in workers:
            w.stop()


def test_a_worker_restarted_with_its_instance_id_causes_no_rebalance(fresh_broker, tmp_path,
                                                                      worker_engine):
    # Dynamic members would have moved the other worker's count by 2.
    assert _restart_one_of_two(fresh_broker, tmp_path, worker_engine, same_address=True) == 0


@pytest.mark.workers("faust")
def test_a_faust_worker_back_under_another_address_rebalances_the_group_once(fresh_broker,
                                                                             tmp_path,
                                                                             worker_engine):
    # Before `rejoining_assignor`, the restarted worker hung in Faust's assertion on its address
    # and the outcomes of its partitions never came.
    assert _restart_one_of_two(fresh_broker, tmp_path, worker_engine, same_address=False) == 1


#: What the fenced worker's log says, per engine.
FENCED_SAYS = {
    # agents.app.StopWhenFenced; before it, the fenced Faust worker stayed alive for ever in table
    # recovery, deciding nothing, its log saying "[Error -1] UnknownError".
    "faust": ["with this worker's instance id 'worker-1'", "FencedInstanceIdError"],
    # librdkafka's fatal error, raised by Quix's consumer.
    "quix": ["Static consumer fenced by other consumer with same group.instance.id"],
}


def test_a_worker_fenced_by_another_with_its_instance_id_stops_and_says_why(
        fresh_broker, tmp_path, worker_engine):
    # Two workers started with one instance id (a copied deployment setting): the broker keeps
    # one member per id and fences the other, which stops and says why; the other decides
    # everything.
    bootstrap = fresh_broker.bootstrap
    lines = _sorted_history(300, seed=61)
    expected, contended, wanted = _expect(lines)
    workers = []
    for i in range(2):
        logs = tmp_path / f"logs-{i}"
        logs.mkdir()
        workers.append(WorkerProcess(
            fresh_broker, tmp_path / f"data-{i}", logs, config=DEMO_CONFIG, engine=worker_engine,
            extra_args=["--instance-id", "worker-1", "--session-timeout", "30"]))
    first, second = workers
    try:
        first.start()
        sent = _produce(bootstrap, lines)
        Outcomes(bootstrap).until_decisions(sent // 3, 600, first)
        second.start()  # with the first one's instance id
        wait_for(lambda: any(w.process is None or w.process.poll() is not None for w in workers),
                 180, "one of the two workers fenced and stopped")
        stopped = [w for w in workers if w.process is None or w.process.poll() is not None]
        assert len(stopped) == 1, [w.log_tail() for w in workers]
        (survivor,) = [w for w in workers if w not in stopped]
        assert stopped[0].process is not None and stopped[0].process.returncode != 0
        said = stopped[0].log_tail(200)
        for words in FENCED_SAYS[worker_engine]:
            assert words in said, said
        published = Outcomes(bootstrap).until_ids(wanted, 900, survivor, expected)
        _assert_as_simulate(published, expected, contended)
        survivor.assert_alive()
    finally:
        for w in workers:
            w.stop()
