"""`mynapoint worker` settings from flags and environment (agents/worker.py): numbers out of range
are refused with the flag, the variable and what to set, before Faust sees them."""

from __future__ import annotations

import argparse

import pytest

from agents.worker import add_arguments, settings_from_args


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_and_flags():
    s = settings_from_args(parse("--web-port", "7001", "--metrics-port", "0", "--idle-wait", "0.5"))
    assert (s.web_port, s.metrics_port, s.idle_wait, s.partitions) == (7001, None, 0.5, 4)


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("MYNAPOINT_WEB_PORT", "7002")
    monkeypatch.setenv("MYNAPOINT_PARTITIONS", "8")
    s = settings_from_args(parse())
    assert (s.web_port, s.partitions) == (7002, 8)


def test_a_blank_variable_means_not_set(monkeypatch):
    # As everywhere else (`schemas.settings.from_env`): a manifest that leaves a variable blank
    # gets the default, not an empty value.
    for var in ("MYNAPOINT_IDLE_WAIT", "MYNAPOINT_DATA_DIR", "MYNAPOINT_PROCESSING_GUARANTEE"):
        monkeypatch.setenv(var, "")
    s = settings_from_args(parse())
    assert (s.idle_wait, s.data_dir, s.processing_guarantee) == (3.0, "var/worker", "at_least_once")


@pytest.mark.parametrize(("argv", "said"), [
    (["--web-port", "0"], "--web-port (MYNAPOINT_WEB_PORT) must be a port, 1-65535; got 0"),
    (["--web-port", "70000"], "--web-port (MYNAPOINT_WEB_PORT) must be a port, 1-65535"),
    (["--metrics-port", "-1"], "--metrics-port (MYNAPOINT_METRICS_PORT) must be a port"),
    (["--partitions", "0"], "--partitions (MYNAPOINT_PARTITIONS) must be a whole number"),
    (["--idle-wait", "-2"], "--idle-wait (MYNAPOINT_IDLE_WAIT) must be seconds, 0 or more"),
    (["--max-held-per-partition", "0"],
     "--max-held-per-partition (MYNAPOINT_MAX_HELD_PER_PARTITION) must be a whole number of "
     "records, 1 or more"),
    (["--journal-batch", "0"],
     "--journal-batch (MYNAPOINT_JOURNAL_BATCH) must be a whole number of entries, 1 to 64"),
    (["--journal-batch", "65"], "--journal-batch (MYNAPOINT_JOURNAL_BATCH) must be"),
    # Found by starting workers so: an app id Kafka cannot name topics after (Tansu took one
    # with a space), an empty one (Faust's "App requires an id!"), a data directory that is a
    # file, a host that does not resolve and an unknown log level (tracebacks from the engine).
    (["--app-id", "a b"], "--app-id (MYNAPOINT_APP_ID) must be 1 to 204 letters, digits, '.', "
     "'_' or '-': the workers name Kafka topics after it; got 'a b'"),
    (["--app-id", "x" * 205], "--app-id (MYNAPOINT_APP_ID) must be 1 to 204"),
    (["--data-dir", __file__], "--data-dir (MYNAPOINT_DATA_DIR) must be a directory (made if "
     "missing), not a file"),
    (["--web-host", "999.1.1.1"], "--web-host (MYNAPOINT_WEB_HOST) must be an address or host "
     "name of this machine to listen on"),
    (["--metrics-port", "9999", "--metrics-host", "no-such-host.invalid"],
     "--metrics-host (MYNAPOINT_METRICS_HOST) must be an address or host name"),
    (["--loglevel", "loud"], "--loglevel (MYNAPOINT_LOGLEVEL) must be one of critical, debug, "
     "error, fatal, info, warn, warning; got 'loud'"),
])
def test_out_of_range_is_refused_saying_what_to_set(argv, said):
    with pytest.raises(SystemExit) as caught:
        settings_from_args(parse(*argv))
    assert said in str(caught.value)


def test_what_is_refused_has_its_good_forms():
    s = settings_from_args(parse("--app-id", "app.v2_blue-1", "--data-dir", "/tmp/no/such/dir",
                                 "--web-host", "localhost", "--loglevel", "DEBUG"))
    assert (s.app_id, s.data_dir, s.web_host, s.loglevel) == ("app.v2_blue-1", "/tmp/no/such/dir",
                                                              "localhost", "DEBUG")


def test_an_empty_app_id_flag_is_refused(monkeypatch):
    monkeypatch.setenv("MYNAPOINT_APP_ID", "")  # blank: the default, as every variable
    assert settings_from_args(parse()).app_id == "mynapoint"
    with pytest.raises(SystemExit, match="--app-id .* must be 1 to 204"):
        settings_from_args(parse("--app-id", ""))


def test_a_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("MYNAPOINT_IDLE_WAIT", "soon")
    with pytest.raises(SystemExit) as caught:
        settings_from_args(parse())
    assert "MYNAPOINT_IDLE_WAIT" in str(caught.value) and "'soon'" in str(caught.value)


def test_the_bound_on_held_records_comes_from_the_flag_or_the_environment(monkeypatch):
    # It reaching intake is tested on the broker (tests/integration/test_alignment.py).
    assert settings_from_args(parse()).max_held_per_partition == 2000
    monkeypatch.setenv("MYNAPOINT_MAX_HELD_PER_PARTITION", "50")
    assert settings_from_args(parse()).max_held_per_partition == 50
    assert settings_from_args(parse("--max-held-per-partition", "7")).max_held_per_partition == 7


def test_the_journal_batch_comes_from_the_flag_or_the_environment(monkeypatch):
    assert settings_from_args(parse()).journal_batch == 64
    monkeypatch.setenv("MYNAPOINT_JOURNAL_BATCH", "1")
    assert settings_from_args(parse()).journal_batch == 1
    assert settings_from_args(parse("--journal-batch", "8")).journal_batch == 8


def test_standbys_and_guarantee_reach_the_faust_app(monkeypatch, tmp_path):
    from agents.app import create_app

    monkeypatch.setenv("MYNAPOINT_PROCESSING_GUARANTEE", "exactly_once")
    s = settings_from_args(parse("--standby-replicas", "2", "--data-dir", str(tmp_path)))
    assert (s.standby_replicas, s.processing_guarantee) == (2, "exactly_once")
    app = create_app(s)
    assert app.conf.table_standby_replicas == 2
    assert str(app.conf.processing_guarantee.value) == "exactly_once"


def test_defaults_keep_one_standby_and_at_least_once():
    s = settings_from_args(parse())
    assert (s.standby_replicas, s.processing_guarantee) == (1, "at_least_once")


@pytest.mark.parametrize(("env", "said"), [
    ({"MYNAPOINT_PROCESSING_GUARANTEE": "twice"},
     "--processing-guarantee (MYNAPOINT_PROCESSING_GUARANTEE) must be one of at_least_once, "
     "exactly_once; got 'twice'"),
    ({"MYNAPOINT_STANDBY_REPLICAS": "-1"},
     "--standby-replicas (MYNAPOINT_STANDBY_REPLICAS) must be a count, 0 or more"),
])
def test_bad_standbys_or_guarantee_are_refused(monkeypatch, env, said):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as caught:
        settings_from_args(parse())
    assert said in str(caught.value)


def test_rebalances_do_not_wait_for_records_held_by_alignment(tmp_path):
    # Faust's default waits for every held record to be acknowledged at each rebalance; intake
    # acknowledges only after journaling, which a rebalance prevents: a deadlock (agents/app.py).
    from agents.app import create_app

    app = create_app(settings_from_args(parse("--data-dir", str(tmp_path))))
    assert app.conf.stream_wait_empty is False


def test_the_tables_changelogs_are_made_before_faust_starts_as_faust_makes_them(tmp_path):
    # On Apache Kafka, changelogs Faust made at start-up could be missing from its consumer's
    # metadata, and the ledger's first table write then failed its partition check.
    from agents.app import create_app
    from clients.offline import worker_topics
    from schemas import topics

    names, configs = worker_topics("faust", "mynapoint-x")
    app = create_app(settings_from_args(parse("--data-dir", str(tmp_path),
                                              "--app-id", "mynapoint-x")))
    changelogs = {t.changelog_topic.get_topic_name()
                  for t in app.mynapoint_tables.values()}  # type: ignore[attr-defined]
    assert changelogs == {topics.changelog_topic("mynapoint-x", t) for t in topics.TABLES}
    assert changelogs <= set(names)
    assert set(topics.INPUT_TOPICS + topics.OUTPUT_TOPICS) <= set(names)
    assert all(configs[c] == {"cleanup.policy": "compact"} for c in changelogs)
    # What Faust asks for its own changelogs.
    for table in app.mynapoint_tables.values():  # type: ignore[attr-defined]
        assert table.changelog_topic.compacting and not table.changelog_topic.deleting


def test_the_engine_comes_from_the_flag_or_the_environment(monkeypatch):
    assert settings_from_args(parse()).engine == "faust"
    assert settings_from_args(parse("--engine", "quix")).engine == "quix"
    monkeypatch.setenv("MYNAPOINT_ENGINE", "Quix")
    assert settings_from_args(parse()).engine == "quix"
    monkeypatch.setenv("MYNAPOINT_ENGINE", "flink")
    with pytest.raises(SystemExit, match="MYNAPOINT_ENGINE.*faust, quix.*'flink'"):
        settings_from_args(parse())


def test_the_faust_worker_refuses_another_engine(capsys):
    from agents.worker import run_worker

    assert run_worker(parse("--engine", "quix")) == 2
    assert "--engine quix" in capsys.readouterr().err


def test_a_worker_is_a_dynamic_member_with_a_10_second_session_by_default():
    s = settings_from_args(parse())
    assert (s.instance_id, s.session_timeout) == (None, 10.0)


def test_instance_id_and_session_timeout_come_from_the_flag_or_the_environment(monkeypatch):
    monkeypatch.setenv("MYNAPOINT_INSTANCE_ID", "worker-1")
    monkeypatch.setenv("MYNAPOINT_SESSION_TIMEOUT", "120")
    assert (settings_from_args(parse()).instance_id,
            settings_from_args(parse()).session_timeout) == ("worker-1", 120.0)
    s = settings_from_args(parse("--instance-id", "w.2_b", "--session-timeout", "45"))
    assert (s.instance_id, s.session_timeout) == ("w.2_b", 45.0)


@pytest.mark.parametrize(("argv", "said"), [
    # What Apache Kafka accepts (JoinGroupRequest.validateGroupInstanceId), said before it
    # refuses the JoinGroup.
    (["--instance-id", "worker 1"],
     "--instance-id (MYNAPOINT_INSTANCE_ID) must be 1 to 249 letters, digits, '.', '_' or '-'"),
    (["--instance-id", ".."], "--instance-id (MYNAPOINT_INSTANCE_ID) must be"),
    (["--instance-id", "w" * 250], "--instance-id (MYNAPOINT_INSTANCE_ID) must be"),
    # The broker's group.min/max.session.timeout.ms by default.
    (["--session-timeout", "5"],
     "--session-timeout (MYNAPOINT_SESSION_TIMEOUT) must be seconds, 6 to 1800; got 5.0"),
    (["--session-timeout", "1801"], "--session-timeout (MYNAPOINT_SESSION_TIMEOUT) must be"),
])
def test_a_bad_instance_id_or_session_timeout_is_refused(argv, said):
    with pytest.raises(SystemExit) as caught:
        settings_from_args(parse(*argv))
    assert said in str(caught.value)


def test_static_membership_reaches_the_faust_consumer(tmp_path):
    # aiokafka sends no LeaveGroup for a member with an instance id (its
    # GroupCoordinator._maybe_leave_group): the broker tests check what that buys.
    from agents.app import create_app

    app = create_app(settings_from_args(parse("--data-dir", str(tmp_path), "--instance-id",
                                              "worker-7", "--session-timeout", "300")))
    assert app.conf.consumer_group_instance_id == "worker-7"
    assert app.conf.broker_session_timeout == 300.0
    # Faust refuses a session timeout longer than its request timeout.
    assert app.conf.broker_request_timeout > app.conf.broker_session_timeout
    dynamic = create_app(settings_from_args(parse("--data-dir", str(tmp_path / "d"))))
    assert dynamic.conf.consumer_group_instance_id is None
    assert dynamic.conf.broker_session_timeout == 10.0


def test_static_membership_reaches_the_quix_consumer():
    from quix_worker.app import consumer_config

    config = consumer_config(settings_from_args(parse("--instance-id", "worker-7")))
    assert (config["group.instance.id"], config["session.timeout.ms"]) == ("worker-7", 10_000)
    assert "max.poll.interval.ms" not in config  # librdkafka's default, which Quix times by
    dynamic = consumer_config(settings_from_args(parse("--session-timeout", "1800")))
    assert "group.instance.id" not in dynamic
    # librdkafka requires max.poll.interval.ms >= session.timeout.ms.
    assert dynamic["max.poll.interval.ms"] >= dynamic["session.timeout.ms"] == 1_800_000


@pytest.mark.parametrize(("mechanism", "cafile", "protocol"), [
    (None, None, None),                      # plaintext: aiokafka's defaults
    (None, "ca.pem", "SSL"),                 # TLS alone
    ("PLAIN", None, "SASL_PLAINTEXT"),
    ("SCRAM-SHA-512", "ca.pem", "SASL_SSL"),
])
def test_the_sasl_and_tls_settings_as_aiokafka_takes_them(monkeypatch, mechanism, cafile,
                                                          protocol):
    import ssl

    from schemas.settings import aiokafka_security

    monkeypatch.setattr(ssl, "create_default_context", lambda cafile: ("context", cafile))
    kwargs = aiokafka_security(mechanism, "alice" if mechanism else None,
                               "secret" if mechanism else None, cafile)
    assert kwargs.get("security_protocol") == protocol
    assert kwargs.get("ssl_context") == (("context", cafile) if cafile else None)
    if mechanism:
        assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"],
                kwargs["sasl_plain_password"]) == (mechanism, "alice", "secret")
    else:
        assert not {"sasl_mechanism", "sasl_plain_username", "sasl_plain_password"} & set(kwargs)


def test_the_worker_makes_its_own_clients_with_its_sasl_flags_or_variables(monkeypatch):
    # Its topics' admin client (`clients.offline.start_worker_topics`) and the Quix status API's
    # group lookups connect as its engine does: before, they ignored the flags.
    s = settings_from_args(parse("--sasl-mechanism", "PLAIN", "--sasl-username", "alice",
                                 "--sasl-password", "secret"))
    assert s.client_kwargs == {"sasl_mechanism": "PLAIN", "sasl_plain_username": "alice",
                               "sasl_plain_password": "secret",
                               "security_protocol": "SASL_PLAINTEXT"}
    monkeypatch.setenv("MYNAPOINT_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("MYNAPOINT_SASL_USERNAME", "bob")
    monkeypatch.setenv("MYNAPOINT_SASL_PASSWORD", "hunter2")
    s = settings_from_args(parse())
    assert (s.client_kwargs["sasl_mechanism"], s.client_kwargs["sasl_plain_username"]) == (
        "SCRAM-SHA-256", "bob")
    from clients.history import client_kwargs_from_env

    assert client_kwargs_from_env() == s.client_kwargs  # the commands' form: the same


def test_a_plaintext_worker_passes_no_security_settings():
    assert settings_from_args(parse()).client_kwargs == {}


def test_a_sasl_mechanism_without_its_login_is_refused():
    with pytest.raises(SystemExit, match="--sasl-mechanism needs --sasl-username"):
        settings_from_args(parse("--sasl-mechanism", "PLAIN"))


def test_both_engines_take_the_security_settings_read_once(tmp_path):
    # One reading of the flags, one SSL context: the worker's own clients and Faust's share it,
    # and the Quix connection names the same CA file and login.
    import faust

    from devtools.brokers.certs import make_tls_files
    from quix_worker.worker import connection

    ca = make_tls_files(tmp_path, "localhost").ca
    s = settings_from_args(parse("--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "alice",
                                 "--sasl-password", "secret", "--ssl-cafile", str(ca)))
    creds = s.broker_credentials
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == (
        "alice", "secret", "SCRAM-SHA-256")
    assert creds.ssl_context is s.client_kwargs["ssl_context"]
    assert s.client_kwargs["security_protocol"] == "SASL_SSL"
    assert "secret" not in repr(s)
    quix = connection(s)
    assert (quix.security_protocol, quix.sasl_mechanism, quix.sasl_username,
            quix.ssl_ca_location) == ("sasl_ssl", "SCRAM-SHA-256", "alice", str(ca))

    tls = settings_from_args(parse("--ssl-cafile", str(ca)))
    assert tls.broker_credentials is tls.client_kwargs["ssl_context"]
    assert connection(tls).security_protocol == "ssl"
    plain = settings_from_args(parse())
    assert plain.broker_credentials is None and connection(plain) is None



def test_the_replication_factor_is_the_clusters_unless_asked(monkeypatch):
    assert settings_from_args(parse()).replication_factor is None  # the cluster's default
    assert settings_from_args(parse("--replication-factor", "3")).replication_factor == 3
    monkeypatch.setenv("MYNAPOINT_REPLICATION_FACTOR", "2")
    assert settings_from_args(parse()).replication_factor == 2
    monkeypatch.setenv("MYNAPOINT_REPLICATION_FACTOR", "")  # blank: not set
    assert settings_from_args(parse()).replication_factor is None
    with pytest.raises(SystemExit, match="--replication-factor"):
        settings_from_args(parse("--replication-factor", "0"))
