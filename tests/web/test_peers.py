"""How a worker without table routing finds the owner of a partition (streams/web/peers.py): the
canonical URL in the consumer's client id, read back from what each broker reports of a group's
members, and the order in which peers are asked."""

from __future__ import annotations

import pytest

from streams.web.peers import CLIENT_ID_PREFIX, Owners, client_id, url_of, urls_of

URL_A = "http://10.0.0.7:6066"
URL_B = "https://worker-b.internal:8443/mynapoint"


@pytest.mark.parametrize("url", [URL_A, URL_B, "http://[::1]:6066", "http://労働:1"])
def test_the_client_id_carries_the_url_in_characters_every_broker_accepts(url):
    cid = client_id(url)
    assert cid.startswith(CLIENT_ID_PREFIX)
    assert all(c.isascii() and (c.isalnum() or c == "-") for c in cid)
    assert url_of(cid) == url


def test_a_member_id_names_the_url_too():
    # Apache Kafka and Tansu make a member id of the client id, "-" and a UUID (Tansu reports
    # nothing else of a member); the UUID's hex digits cannot run into the URL's.
    member = client_id(URL_A) + "-6e69a231-fb37-47f5-9e9f-50c398e893d5"
    assert url_of(member) == URL_A


@pytest.mark.parametrize("name", ["", "rdkafka", "mynapoint-web-", "mynapoint-web-abc",
                                  "mynapoint-web-zz", "mynapoint-web-ff"])
def test_other_names_carry_no_url(name):
    assert url_of(name) is None


def test_urls_of_a_groups_members_from_either_broker():
    kafka = [("m1", client_id(URL_B)), ("m2", client_id(URL_A))]
    tansu = [(client_id(URL_A) + "-uuid1", ""), (client_id(URL_B) + "-uuid2", "")]
    assert urls_of(kafka) == urls_of(tansu) == sorted([URL_A, URL_B])
    assert urls_of([("consumer-1-uuid", "rdkafka"), ("m", client_id(URL_A))]) == [URL_A]


def test_the_last_known_owner_is_asked_first_and_forgotten_when_it_no_longer_owns():
    owners = Owners()
    peers = ["http://a", "http://b", "http://c"]
    assert owners.candidates(2, peers, me="http://a") == ["http://b", "http://c"]
    owners.answered(2, "http://c")
    assert owners.candidates(2, peers, me="http://a") == ["http://c", "http://b"]
    assert owners.candidates(1, peers, me="http://a") == ["http://b", "http://c"]
    owners.misdirected(2, "http://b")  # another peer's 421 changes nothing
    assert owners.candidates(2, peers, me="http://a")[0] == "http://c"
    owners.misdirected(2, "http://c")
    assert owners.candidates(2, peers, me="http://a") == ["http://b", "http://c"]
    # A departed owner is not asked.
    owners.answered(3, "http://gone")
    assert owners.candidates(3, peers, me="http://a") == ["http://b", "http://c"]
