"""Topic names (part of the public contract), and which input topic carries which event type.

Pure data, in `schemas/` with the event and outcome formats: the agents, `mynapoint produce`, the
replay core (`streams/audit/replay.py`), the tests and the benchmarks all take the names from here.
"""

from __future__ import annotations

import re

# Inputs: record key = person_id (UTF-8), value = the JSON event of CONTRACT.md.
CARDS = "mynapoint.cards"
CERTIFICATES = "mynapoint.certificates"
RESERVATIONS = "mynapoint.reservations"
REGISTRATIONS = "mynapoint.registrations"
LINKS = "mynapoint.links"
PAYMENTS = "mynapoint.payments"

INPUT_TOPICS: tuple[str, ...] = (CARDS, CERTIFICATES, RESERVATIONS, REGISTRATIONS, LINKS, PAYMENTS)

# Outputs: the outcome objects of CONTRACT.md. Decisions, grants and alerts are keyed by person_id;
# dead letters by the source record's key when it had one.
DECISIONS = "mynapoint.decisions"
GRANTS = "mynapoint.grants"
ALERTS = "mynapoint.alerts"
DEADLETTER = "mynapoint.deadletter"

OUTPUT_TOPICS: tuple[str, ...] = (DECISIONS, GRANTS, ALERTS, DEADLETTER)

# Which output topic carries an outcome of each `kind` (the tag of schemas/outcomes.py).
TOPIC_OF_KIND: dict[str, str] = {"decision": DECISIONS, "grant": GRANTS, "alert": ALERTS,
                                 "dead_letter": DEADLETTER}

# Internal. The journal is the ordered per-person record the ledger folds (events and the answers
# to cross-person claims); it is what replay reads. Claims are keyed by payment account (or by the
# single budget key), so one partition owns each account.
JOURNAL = "mynapoint.journal"
CLAIMS = "mynapoint.claims"

TOPIC_BY_TYPE: dict[str, str] = {
    "card.issued": CARDS,
    "card.suspended": CARDS,
    "card.resumed": CARDS,
    "certificate.renewed": CERTIFICATES,
    "mykey.reserved": RESERVATIONS,
    "insurance.registered": REGISTRATIONS,
    "account.registered": REGISTRATIONS,
    "service.preregistered": REGISTRATIONS,
    "service.linked": LINKS,
    "payment.recorded": PAYMENTS,
    "payment.refunded": PAYMENTS,
}

DEFAULT_PARTITIONS = 4


#: The worker's tables (agents/app.py); each one's changelog is `changelog_topic(app_id, table)`.
TABLES: tuple[str, ...] = ("persons", "claims", "timeline")

#: A table changelog's topic configuration, as Faust creates it: compacted, so the latest value
#: per key (the table) is kept however old.
CHANGELOG_CONFIG: dict[str, str] = {"cleanup.policy": "compact"}


#: The configuration of the topics a stateful step reads (the journal, the claims), set when they
#: are created: the journal is the pipeline's history, which replay reads from its start, so
#: neither time nor size removes any of it. (Quix Streams also reads these two settings of a
#: stateful step's source topic, and Tansu reports only the settings a topic was created with.)
HISTORY_CONFIG: dict[str, str] = {"retention.ms": "-1", "retention.bytes": "-1"}

#: What a worker requires of the journal and the claims topic in effect, whoever made them
#: (`clients.offline.config_problem`): `HISTORY_CONFIG`, and deletion by retention only, never
#: compaction (which would keep one journal record per person).
HISTORY_REQUIRED: dict[str, str] = {**HISTORY_CONFIG, "cleanup.policy": "delete"}

#: A Quix Streams state changelog's topic configuration, as Quix creates it: compacted, with the
#: retention of its source topic (the journal's or the claims', `HISTORY_CONFIG`).
QUIX_CHANGELOG_CONFIG: dict[str, str] = {**HISTORY_CONFIG, **CHANGELOG_CONFIG}


def changelog_topic(app_id: str, table: str = "persons") -> str:
    """Faust names a table's changelog topic f"{app_id}-{table}-changelog"."""
    return f"{app_id}-{table}-changelog"


def faust_leader_topic(app_id: str) -> str:
    """The topic of one partition through which Faust's workers elect a leader (its
    `LeaderAssignor`): f"{app_id}-__assignor-__leader"."""
    return f"{app_id}-__assignor-__leader"


def quix_changelog_topic(app_id: str, source: str) -> str:
    """The topic Quix Streams changelogs the state of the dataframe on `source` to (its own
    naming: `changelog__{group}--{topic}--{store}`; the Quix worker's dataframes use the default
    store)."""
    return f"{QUIX_CHANGELOG_PREFIX}{app_id}--{source}--default"


QUIX_CHANGELOG_PREFIX = "changelog__"


#: Kafka's limit on the length of a topic name (and of a `group.instance.id`).
TOPIC_NAME_MAX = 249
#: The characters Kafka takes in a topic name (and in a `group.instance.id`).
KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]+")


def app_id_problem(app_id: str) -> str | None:
    """Why `app_id` cannot name the app's topics, or None. Kafka takes topic names of 1 to 249
    of [A-Za-z0-9._-], and the workers name topics after the app id: the Faust tables'
    changelogs, Faust's leader topic, and the Quix state changelogs of any of the app's topics
    (the longest). So the app id must be made of those characters, short enough for the longest
    of these names."""
    longest = max(len(quix_changelog_topic("", t))
                  for t in (*INPUT_TOPICS, *OUTPUT_TOPICS, JOURNAL, CLAIMS))
    longest = max(longest, len(faust_leader_topic("")),
                  *(len(changelog_topic("", t)) for t in TABLES))
    limit = TOPIC_NAME_MAX - longest
    if not KAFKA_NAME.fullmatch(app_id) or len(app_id) > limit:
        return (f"must be 1 to {limit} letters, digits, '.', '_' or '-': the workers name "
                "Kafka topics after it")
    return None


def is_quix_changelog(topic: str) -> bool:
    return topic.startswith(QUIX_CHANGELOG_PREFIX)


#: The Quix Streams worker keeps the ledger's two stores in the journal dataframe's state: a
#: person's record under `QUIX_PERSONS_TAG + person_id`, the timeline's chunks under
#: `QUIX_TIMELINE_TAG + ...`. Quix prefixes every state key with the record's key and `|`, so a
#: person's record is `person_id|p:person_id` in the store and its changelog.
QUIX_PERSONS_TAG = b"p:"
QUIX_TIMELINE_TAG = b"t:"
QUIX_PREFIX_SEPARATOR = b"|"


def quix_state_key(person: bytes, tag: bytes, key: bytes) -> bytes:
    """The key under which the Quix worker's ledger state holds `key` of the store `tag` (the
    persons' or the timeline's) for `person`, in RocksDB and in the changelog."""
    return person + QUIX_PREFIX_SEPARATOR + tag + key


def quix_person_of(state_key: bytes) -> bytes | None:
    """The person_id whose record a Quix state (or changelog) key holds; None for other keys
    (timeline chunks)."""
    n = len(state_key) - len(QUIX_PERSONS_TAG) - 1
    if n <= 0 or n % 2:
        return None
    person = state_key[:n // 2]
    if state_key != quix_state_key(person, QUIX_PERSONS_TAG, person):
        return None
    return person


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's `Utils.murmur2`), unsigned, as aiokafka's."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        i4 = i * 4
        k = (data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24))
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    if extra >= 3:
        h ^= data[n4 * 4 + 2] << 16
    if extra >= 2:
        h ^= data[n4 * 4 + 1] << 8
    if extra >= 1:
        h ^= data[n4 * 4]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: Kafka's default partitioner (Faust's and aiokafka's too).

    Every topic of the pipeline is keyed by person_id except claims (the payment account or the
    budget key), so a person's records, journal entries, outcomes and table rows all share the
    partition `partition_for_key(person_id.encode(), n)` of an n-partition deployment.
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions
