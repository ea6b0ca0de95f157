"""The table-size gauge asks RocksDB for its estimate instead of walking every key (agents/metrics.py)."""

from __future__ import annotations

import faust
import rocksdict

from agents.metrics import table_keys


class FakeStore:
    """The two things `table_keys` reads of Faust's RocksDB store."""

    use_rocksdict = True

    def __init__(self, dbs):
        self.dbs = dbs
        self.app = faust.App("mynapoint-metrics-test")
        self.app.assignor  # noqa: B018 - made, as the worker's start makes it

    def _dbs_for_actives(self):
        return iter(self.dbs)


class FakeTable:
    def __init__(self, store):
        self.data = store

    def __len__(self):
        raise AssertionError("len() walks every key: the gauge must not call it")


def test_rocksdb_tables_are_sized_from_the_estimate(tmp_path):
    dbs = [rocksdict.Rdict(str(tmp_path / f"p{i}")) for i in range(2)]
    try:
        for i, db in enumerate(dbs):
            for k in range(100 * (i + 1)):
                db[b"P%07d" % k] = b"v"
        assert table_keys(FakeTable(FakeStore(dbs))) == 300
    finally:
        for db in dbs:
            db.close()


def test_other_stores_fall_back_to_len():
    assert table_keys({b"a": b"1", b"b": b"2"}) == 2


def test_faust_rocksdb_store_still_has_what_the_gauge_reads(tmp_path):
    # The estimate path rests on two private names of faust-streaming's RocksDB store; if an
    # upgrade renames them, the gauge would silently fall back to walking every key.
    import faust

    app = faust.App("mynapoint-metrics-test", broker="kafka://127.0.0.1:1", store="rocksdb://",
                    datadir=str(tmp_path))
    store = app.Table("persons", key_type=bytes, value_type=bytes).data
    assert store.use_rocksdict is True
    assert callable(store._dbs_for_actives)
