"""The numeric options of every `mynapoint` command (`schemas.settings.arg_type` and its
instances): a value that means nothing is a usage error (exit 2) that names the option and says
what to give, instead of a traceback or a run. Found by trying them: `dev --partitions 0` ended
in a traceback, `broker --port 0` started Tansu on port 0 and timed out after 30 s, `generate
--people -5` wrote an empty history, `--bad-ratio 2` and `nan` were taken, `--timeout -1` made
the broker commands say "cannot reach a Kafka broker (...)" with nothing in the brackets."""

from __future__ import annotations

import pytest

from cli.main import build_parser, main
from schemas.settings import BadSetting, bootstrap_problem, usable_app_id, usable_bootstrap


@pytest.mark.parametrize(("argv", "name", "value"), [
    (["broker", "--port", "0"], "port", None),  # a free one, as when absent
    (["broker", "--port", "19092"], "port", 19092),
    (["broker"], "port", None),
    (["broker", "--startup-timeout", "0.5"], "startup_timeout", 0.5),
    (["dev", "--port", "0"], "port", None),
    (["dev", "--prometheus-port", "0"], "prometheus_port", None),
    (["dev", "--metrics-port", "0"], "metrics_port", None),  # no metrics
    (["dev"], "metrics_port", 9108),
    (["dev", "--web-port", "6067"], "web_port", 6067),
    (["dev", "--partitions", "1"], "partitions", 1),
    (["dev", "--people", "20"], "people", 20),
    (["generate", "--people", "1"], "people", 1),
    (["generate", "--bad-ratio", "0"], "bad_ratio", 0.0),
    (["generate", "--bad-ratio", "1"], "bad_ratio", 1.0),
    (["produce", "--partitions", "8", "f"], "partitions", 8),
    (["replay", "--timeout", "30"], "timeout", 30.0),
    (["replay", "--examples", "0"], "examples", 0),
    (["whatif", "--config", "c", "--top", "0"], "top", 0),
    (["rescale", "--to-partitions", "8", "--timeout", "1e3"], "timeout", 1000.0),
])
def test_a_value_that_means_something_is_taken(argv, name, value):
    assert getattr(build_parser().parse_args(argv), name) == value


@pytest.mark.parametrize(("argv", "said"), [
    (["broker", "--port", "70000"], "a port, 1-65535, or 0 for a free one"),
    (["broker", "--port", "-1"], "a port, 1-65535, or 0 for a free one"),
    (["broker", "--port", "x"], "a port, 1-65535, or 0 for a free one"),
    (["broker", "--startup-timeout", "-1"], "a number of seconds above 0"),
    (["dev", "--web-port", "0"], "a port, 1-65535"),
    (["dev", "--metrics-port", "65536"], "a port, 1-65535, or 0 for no metrics"),
    (["dev", "--partitions", "0"], "a whole number, 1 or more"),
    (["dev", "--people", "-1"], "a whole number, 1 or more"),
    (["dev", "--timeout", "-1"], "a number of seconds above 0"),
    (["generate", "--people", "-5"], "a whole number, 1 or more"),
    (["generate", "--bad-ratio", "2"], "a share from 0 to 1"),
    (["generate", "--bad-ratio", "nan"], "a share from 0 to 1"),
    (["produce", "f", "--partitions", "-3"], "a whole number, 1 or more"),
    (["replay", "--timeout", "0"], "a number of seconds above 0"),
    (["replay", "--examples", "-2"], "a whole number, 0 or more"),
    (["audit", "--timeout", "nan"], "a number of seconds above 0"),
    (["whatif", "--config", "c", "--top", "-1"], "a whole number, 0 or more"),
    (["rescale", "--to-partitions", "8", "--timeout", "-5"], "a number of seconds above 0"),
    (["takeover", "--to", "quix", "--timeout", "0"], "a number of seconds above 0"),
    (["reask", "--timeout", "inf"], "a number of seconds above 0"),
    (["reask", "--timeout", "soon"], "a number of seconds above 0"),
])
def test_anything_else_is_a_usage_error_that_says_what_to_give(argv, said, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    option, value = argv[-2:]  # the option refused, last in each line above
    assert f"argument {option}: must be {said}; got {value!r}" in capsys.readouterr().err


# -- the Kafka brokers a command is given (--bootstrap, or MYNAPOINT_BOOTSTRAP) ------------------
# aiokafka raised ValueError ('127.0.0.1:abc') or OverflowError ('127.0.0.1:99999') from inside
# its connect: a traceback. A scheme or an empty entry had it look for a host of that name.


@pytest.mark.parametrize("bootstrap", [
    "127.0.0.1:9092", "localhost", "kafka-0.kafka.svc:9093, kafka-1:9093", "[::1]:9092", "[::1]",
    "::1", "b1:1,b2:65535",
])
def test_what_aiokafka_reads_as_brokers_is_taken(bootstrap):
    assert bootstrap_problem(bootstrap) is None
    assert usable_bootstrap(bootstrap) == bootstrap


@pytest.mark.parametrize(("bootstrap", "said"), [
    ("127.0.0.1:abc", "it is not HOST:PORT with a port 1-65535"),
    ("127.0.0.1:99999", "it is not HOST:PORT with a port 1-65535"),
    ("127.0.0.1:0", "it is not HOST:PORT with a port 1-65535"),
    (":9092", "it is not HOST:PORT with a port 1-65535"),
    ("b1:9092,b2:x", "'b2:x' is not HOST:PORT with a port 1-65535"),
    ("[::1]:x", "it is not [IPv6]:PORT with a port 1-65535"),
    ("PLAINTEXT://b1:9092", "no scheme such as PLAINTEXT:// or http://"),
    ("b1:9092/", "no scheme such as PLAINTEXT:// or http://, no path"),
    ("b1:9092,", "an entry is empty (a comma too many?)"),
    ("b1 :9092", "it has a space in it"),
])
def test_anything_else_is_refused_saying_what_is_wrong(bootstrap, said):
    why = bootstrap_problem(bootstrap)
    assert why is not None and said in why and repr(bootstrap) in why
    assert "Give HOST:PORT" in why and "MYNAPOINT_BOOTSTRAP" in why
    with pytest.raises(BadSetting, match="cannot be used"):
        usable_bootstrap(bootstrap)


def test_no_broker_at_all_is_said_so():
    with pytest.raises(BadSetting, match="say which broker"):
        usable_bootstrap(None)


@pytest.mark.parametrize("argv", [
    ["replay", "--bootstrap", "127.0.0.1:abc"],
    ["export", "--bootstrap", "127.0.0.1:abc", "-o", "out.jsonl"],
    ["audit", "--bootstrap", "127.0.0.1:abc"],
    ["explain", "P1", "--bootstrap", "127.0.0.1:abc"],
    ["rescale", "--to-partitions", "8", "--bootstrap", "127.0.0.1:abc"],
    ["takeover", "--to", "quix", "--bootstrap", "127.0.0.1:abc"],
    ["reask", "--bootstrap", "127.0.0.1:abc"],
    ["produce", "events.jsonl", "--bootstrap", "127.0.0.1:abc"],
])
def test_every_command_that_connects_refuses_it_before_connecting(argv, capsys, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing written where the tests run
    assert main(argv) == 2
    assert "the Kafka brokers '127.0.0.1:abc' cannot be used" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_the_worker_refuses_it_as_its_other_settings():
    from streams.pipeline.settings import settings_from_args

    parser = build_parser()
    with pytest.raises(SystemExit) as info:  # exit status 1, with this message
        settings_from_args(parser.parse_args(["worker", "--bootstrap", "127.0.0.1:abc"]))
    assert str(info.value.code).startswith(
        "mynapoint worker: the Kafka brokers '127.0.0.1:abc' cannot be used")


def test_the_same_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("MYNAPOINT_BOOTSTRAP", "http://kafka:9092")
    assert main(["replay"]) == 2
    assert "the Kafka brokers 'http://kafka:9092' cannot be used" in capsys.readouterr().err


# -- the app a command works on (--app-id, or MYNAPOINT_APP_ID) -----------------------------------
# The worker refused an app id Kafka cannot name its topics after; the auditors' and SREs'
# commands took one and looked for topics no worker can have made.


@pytest.mark.parametrize("argv", [
    ["replay", "--bootstrap", "127.0.0.1:1", "--app-id", "my app"],
    ["export", "--bootstrap", "127.0.0.1:1", "-o", "out.jsonl", "--app-id", "my app"],
    ["whatif", "--bootstrap", "127.0.0.1:1", "--config", "c.toml", "--app-id", "my app"],
    ["rescale", "--to-partitions", "8", "--bootstrap", "127.0.0.1:1", "--app-id", "my app"],
    ["takeover", "--to", "quix", "--bootstrap", "127.0.0.1:1", "--app-id", "my app"],
    ["reask", "--bootstrap", "127.0.0.1:1", "--app-id", "my app"],
])
def test_every_command_that_names_the_app_refuses_one_no_worker_can_have(argv, capsys, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text("")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--app-id (MYNAPOINT_APP_ID) must be 1 to 204 letters, digits" in err
    assert err.rstrip().endswith("got 'my app'")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(("flag", "env", "taken"), [
    (None, None, "mynapoint"),
    (None, "", "mynapoint"),  # a variable left blank means "not set", as for the worker
    (None, "shop-7", "shop-7"),
    ("a." * 102, "shop-7", "a." * 102),  # the flag first; 204 characters
])
def test_an_app_id_any_worker_could_have_is_taken(flag, env, taken):
    environ = {} if env is None else {"MYNAPOINT_APP_ID": env}
    assert usable_app_id(flag, environ) == taken


@pytest.mark.parametrize("app_id", ["", "my app", "a/b", "a" * 205, "ｱﾌﾟﾘ"])
def test_the_same_refusal_from_the_flag_or_the_environment(app_id):
    with pytest.raises(BadSetting, match="MYNAPOINT_APP_ID"):
        usable_app_id(app_id, {})
    if app_id:
        with pytest.raises(BadSetting, match="MYNAPOINT_APP_ID"):
            usable_app_id(None, {"MYNAPOINT_APP_ID": app_id})


@pytest.mark.parametrize(("argv", "needs_it"), [
    (["explain", "P1", "--bootstrap", "127.0.0.1:1"], False),
    (["audit", "--bootstrap", "127.0.0.1:1"], False),
    (["replay", "--bootstrap", "127.0.0.1:1"], True),
])
def test_commands_that_read_no_table_do_not_need_one(argv, needs_it, capsys, monkeypatch):
    # explain and audit read the journal and the outputs, whose names do not depend on the app:
    # a bad MYNAPOINT_APP_ID does not stop them; replay reads the persons table and refuses it.
    import clients.history
    from clients.history import HistoryError

    asked: list[object] = []

    async def read_history(bootstrap, *, app_id=None, **kwargs):
        asked.append(app_id)
        raise HistoryError("stopped here by the test")

    monkeypatch.setattr(clients.history, "read_history", read_history)
    monkeypatch.setenv("MYNAPOINT_APP_ID", "my app")
    assert main(argv) == 2
    err = capsys.readouterr().err
    if needs_it:
        assert asked == [] and "--app-id (MYNAPOINT_APP_ID)" in err
    else:
        assert asked == [None] and "stopped here by the test" in err


def test_takeover_refuses_a_work_dir_that_is_not_a_directory_before_connecting(tmp_path, capsys):
    # The rows read are kept there: found out only after reading the whole state, it was a
    # traceback. Port 1 answers nobody: the refusal comes before any connection.
    (tmp_path / "file").write_text("")
    for given in (tmp_path / "missing", tmp_path / "file"):
        assert main(["takeover", "--to", "quix", "--bootstrap", "127.0.0.1:1",
                     "--work-dir", str(given)]) == 2
        assert f"--work-dir {given} is not a directory" in capsys.readouterr().err
