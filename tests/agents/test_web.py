"""The status API's wiring into the Faust app (agents/web.py), without a broker; the views on
two live workers: tests/integration/test_status_api.py."""

from __future__ import annotations

from streams.core.config import build_config

CFG = build_config({"services": [{"id": "demo-pay", "name": "Demo Pay"}]})


def test_create_app_registers_the_views_and_switches_off_faust_table_endpoints(tmp_path):
    from agents.app import create_app
    from agents.settings import WorkerSettings

    app = create_app(WorkerSettings(data_dir=str(tmp_path), status_token="t"), CFG)
    routes = {(r.method, r.resource.canonical) for r in app.web.web_app.router.routes()
              if r.resource is not None}
    assert ("GET", "/persons/{person_id}") in routes
    assert ("GET", "/persons/{person_id}/history") in routes
    assert ("GET", "/openapi.json") in routes
    assert ("GET", "/status") in routes
    assert ("GET", "/livez") in routes and ("GET", "/readyz") in routes
    paths = {path for _, path in routes}
    assert not [p for p in paths if p.startswith(("/table", "/router"))], paths
    assert len(app.web.web_app.middlewares) == 1


def test_worker_flags_and_environment_for_the_status_api(monkeypatch):
    import argparse

    from agents.worker import add_arguments, settings_from_args

    def settings(argv: list[str]):
        p = argparse.ArgumentParser()
        add_arguments(p)
        return settings_from_args(p.parse_args(argv))

    monkeypatch.delenv("MYNAPOINT_STATUS_TOKEN", raising=False)
    monkeypatch.delenv("MYNAPOINT_WEB_CANONICAL_URL", raising=False)
    plain = settings([])
    assert plain.status_token is None and "canonical_url" not in plain.extra
    flags = settings(["--status-token", "t1", "--web-canonical-url", "http://w1:6066"])
    assert flags.status_token == "t1" and flags.extra["canonical_url"] == "http://w1:6066"
    monkeypatch.setenv("MYNAPOINT_STATUS_TOKEN", "t2")
    monkeypatch.setenv("MYNAPOINT_WEB_CANONICAL_URL", "http://w2:6066")
    env = settings([])
    assert env.status_token == "t2" and env.extra["canonical_url"] == "http://w2:6066"
    monkeypatch.setenv("MYNAPOINT_STATUS_TOKEN", "")
    assert settings([]).status_token is None


def test_ready_once_faust_has_assigned_partitions_and_while_it_neither_rebalances_nor_recovers(
        tmp_path):
    import asyncio

    import msgspec
    from aiohttp.test_utils import TestClient, TestServer
    from faust.types import TP

    from agents.app import create_app
    from agents.settings import WorkerSettings
    from schemas import topics

    app = create_app(WorkerSettings(data_dir=str(tmp_path), status_token="t"), CFG)

    async def run() -> list[tuple[int, object]]:
        out = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            async def probe(path: str = "/readyz") -> None:
                resp = await client.get(path)  # no token: probes carry no secret
                out.append((resp.status, msgspec.json.decode(await resp.read())))

            await probe()  # not in the group yet
            await app.on_partitions_assigned.send({TP(topics.JOURNAL, 0)})
            await probe()
            app.rebalancing = True
            await probe()
            app.rebalancing, app.in_recovery = False, True
            await probe()
            app.in_recovery = False
            await app.on_partitions_assigned.send(set())  # a rebalance that left it nothing
            await probe()
            await probe("/livez")
        return out

    ok = (200, {"status": "ok"})
    joining, first, rebalancing, recovering, nothing, live = asyncio.run(run())
    assert joining[0] == 503 and "not joined its consumer group" in joining[1]["error"]
    assert first == nothing == live == ok
    assert rebalancing[0] == recovering[0] == 503
    assert "rebalancing or recovering" in rebalancing[1]["error"]
