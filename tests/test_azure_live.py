"""The transport conformance suite against REAL Azure, when credentials are given.

Set AMPLIHACK_TEST_EVENTHUBS_CONNECTION_STRING (and AMPLIHACK_TEST_EVENTHUBS_NAME, default
``hive-shards-conformance``; readers use the ``$Default`` consumer group) and/or
AMPLIHACK_TEST_SERVICEBUS_CONNECTION_STRING (a namespace with Manage rights: the test
creates its subscriptions and reply queue). Without them this module skips, with the reason
printed: it is the ONLY module allowed to skip; everything else runs against local services
or the fake namespace (tests/test_eventhubs_transport.py and the conformance suite).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_transport_conformance as suite

from hive_core.hive_config import AgentConfig, HiveConfig
from hive_core.membership.liveness import FileLiveness
from hive_core.state import MemoryCheckpoints
from hive_core.transports.broker import BrokerTransport

EH = "AMPLIHACK_TEST_EVENTHUBS_CONNECTION_STRING"
SB = "AMPLIHACK_TEST_SERVICEBUS_CONNECTION_STRING"


def _config(tmp: Path, transport: str, conn: str, options: dict) -> HiveConfig:
    return HiveConfig(name=f"conf{tmp.name[-8:]}".replace("_", "-"), transport=transport,
                      connection_string=conn, transport_options=options,
                      agents=tuple(AgentConfig(n) for n in suite.AGENTS))


def eventhubs_live(tmp: Path) -> suite.Fabric:
    from hive_core.transports.eventhubs import EventHubsBroker

    config = _config(tmp, "azure_event_hubs", os.environ[EH], {
        "eventhub": os.environ.get("AMPLIHACK_TEST_EVENTHUBS_NAME", "hive-shards-conformance"),
        "consumer_group": "$Default"})
    checkpoints = MemoryCheckpoints()
    return suite.Fabric(lambda: BrokerTransport(
        EventHubsBroker(config, presence=FileLiveness(tmp / "run"), checkpoints=checkpoints,
                        agent_list=lambda: list(suite.AGENTS),
                        max_message_bytes=suite.LIMIT), max_message_bytes=suite.LIMIT))


def servicebus_live(tmp: Path) -> suite.Fabric:
    from hive_core.transports.servicebus import ServiceBusBroker

    config = _config(tmp, "azure_service_bus", os.environ[SB], {})
    return suite.Fabric(lambda: BrokerTransport(
        ServiceBusBroker(os.environ[SB], config.name, presence=FileLiveness(tmp / "run"),
                         max_message_bytes=suite.LIMIT), max_message_bytes=suite.LIMIT))


LIVE = [
    pytest.param(eventhubs_live, id="eventhubs-live", marks=pytest.mark.skipif(
        not os.environ.get(EH), reason=f"{EH} is not set: no real Event Hubs to test")),
    pytest.param(servicebus_live, id="servicebus-live", marks=pytest.mark.skipif(
        not os.environ.get(SB), reason=f"{SB} is not set: no real Service Bus to test")),
]


@pytest.fixture(params=LIVE)
def fabric(request, tmp_path) -> Iterator[suite.Fabric]:
    made = request.param(tmp_path)
    yield made
    made.close()


# The same checks as tests/test_transport_conformance.py, on the live fabrics above.
test_request_reply_carries_correlation_id = suite.test_request_reply_carries_correlation_id
test_scatter_to_several_targets_in_one_request = \
    suite.test_scatter_to_several_targets_in_one_request
test_unknown_target_fails_fast_with_connection_lost = \
    suite.test_unknown_target_fails_fast_with_connection_lost
test_handler_exception_comes_back_as_error_reply = \
    suite.test_handler_exception_comes_back_as_error_reply
test_oversize_message_is_rejected = suite.test_oversize_message_is_rejected
test_unbind_then_request_is_connection_lost = suite.test_unbind_then_request_is_connection_lost
test_concurrent_requests_each_get_their_own_reply = \
    suite.test_concurrent_requests_each_get_their_own_reply
test_payload_round_trips_plain_data_exactly = suite.test_payload_round_trips_plain_data_exactly
