"""ACLs on a local Apache Kafka started with `KafkaBroker(authorizer=True)`: what a cluster whose
operators grant each principal only some operations looks like to the worker and the commands.

    with KafkaBroker(sasl_users={"alice": "pw"}, authorizer=True) as broker:
        create_acls(broker.bootstrap, [*everything_for("User:alice"),
                                       Acl("deny", "User:alice", "describe_configs", "topic", "t")])

The broker's own listeners (plaintext, controller) authenticate nobody: their principal,
`User:ANONYMOUS`, is a super user, so the harness and `create_acls` go through them, and only the
SASL listener's users are held to the ACLs. CreateAcls is sent with aiokafka's protocol classes,
as `kafka-acls.sh --add` sends it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

#: Broker settings that turn the ACLs on (KRaft's authorizer; the harness stays a super user).
AUTHORIZER_CONFIG: dict[str, str] = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "super.users": "User:ANONYMOUS",
}

# The protocol's codes (org.apache.kafka.common.resource.ResourceType, acl.AclOperation,
# acl.AclPermissionType, resource.PatternType).
_RESOURCE = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
_OPERATION = {"all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7,
              "describe": 8, "cluster_action": 9, "describe_configs": 10, "alter_configs": 11,
              "idempotent_write": 12}
_PERMISSION = {"deny": 2, "allow": 3}
_LITERAL = 3


class Acl(NamedTuple):
    """One ACL: `permission` ("allow" or "deny") of `operation` on a resource, for `principal`
    from any host. A name of "*" is every resource of its type."""

    permission: str
    principal: str
    operation: str
    resource: str
    name: str = "*"


def everything_for(principal: str) -> list[Acl]:
    """Every operation on every topic, group and transactional id, and on the cluster: deny
    ACLs added beside these take precedence, which leaves out just what they name."""
    return [Acl("allow", principal, "all", resource, name) for resource, name in (
        ("topic", "*"), ("group", "*"), ("transactional_id", "*"), ("cluster", "kafka-cluster"))]


def worker_acls(principal: str, *, exactly_once: bool = False) -> list[Acl]:
    """What a worker of either engine needs where its topics were made beforehand
    (docs/RUNBOOK.md, "Topics made beforehand"): read, write, describe and describe the settings
    of the topics; join, commit and describe its consumer group; with `exactly_once`, also
    write and describe its transactional ids, and idempotent writes on the cluster."""
    acls = ([Acl("allow", principal, op, "topic")
             for op in ("read", "write", "describe", "describe_configs")]
            + [Acl("allow", principal, op, "group") for op in ("read", "describe")])
    if exactly_once:
        acls += [Acl("allow", principal, op, "transactional_id") for op in ("write", "describe")]
        acls.append(Acl("allow", principal, "idempotent_write", "cluster", "kafka-cluster"))
    return acls


async def create_acls_async(bootstrap: str, acls: Iterable[Acl]) -> None:
    """Creates `acls` through `bootstrap` (a super user's listener); raises RuntimeError with
    the broker's answer when one is refused."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import CreateAclsRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = next(iter(client.cluster.brokers())).nodeId
        for acl in acls:
            response = await client.send(node, CreateAclsRequest(
                _RESOURCE[acl.resource], acl.name, _LITERAL, acl.principal, "*",
                _OPERATION[acl.operation], _PERMISSION[acl.permission]))
            for code, message in response.creation_responses:
                if code:
                    raise RuntimeError(f"the broker refused {acl}: error {code} {message}")
    finally:
        await client.close()


def create_acls(bootstrap: str, acls: Iterable[Acl]) -> None:
    """Blocking form of `create_acls_async`."""
    from clients.connect import run_blocking

    run_blocking(create_acls_async(bootstrap, list(acls)))
