"""The Redis transport of the distributed mode (workers/distributed/broker.py): a channel whose
connection was closed under it (Redis restarted during a reconnect) says so with a connection
error, which kombu and Celery handle, not an AttributeError that ends the worker."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from workers.distributed.app import make_celery
from workers.settings import load_settings


def test_the_distributed_mode_uses_the_fixed_transport(redis_url: str) -> None:
    app = make_celery(load_settings(broker_url=redis_url))
    with app.connection_for_write() as conn:
        assert type(conn.transport).__module__ == "workers.distributed.broker"
        conn.default_channel.client.ping()  # it is a working Redis transport


def test_a_channel_closed_after_its_connection_went_away_is_a_connection_error(
    redis_url: str,
) -> None:
    """A message taken (acks late), then the connection closed under the channel: closing the
    channel puts the message back, which needs a pool, which needs the connection. kombu's own
    channel fails there with AttributeError (the worker ends); this one with a connection error
    that the close ignores, and the message stays in Redis's unacknowledged set."""
    conn = Connection(redis_url, transport="workers.distributed.broker:Transport")
    channel = conn.default_channel
    queue = Queue("broker-test", Exchange("broker-test", type="direct"), routing_key="broker-test")
    Producer(channel).publish({"doc": 1}, exchange=queue.exchange, routing_key="broker-test",
                              declare=[queue])  # fmt: skip
    taken = queue(channel).get(no_ack=False)
    assert taken is not None and taken.payload == {"doc": 1}
    channel._pool = None  # what a connection error leaves: the pool is made again on next use
    channel.connection.client = None  # the transport detached from its closed connection
    with pytest.raises(redis.exceptions.ConnectionError, match="reconnecting"):
        channel._connparams()
    conn.maybe_close_channel(channel)  # ignored as a connection error: the close goes on
    assert channel.closed
    assert redis.Redis.from_url(redis_url).hlen("unacked") == 1  # not lost: handed out again
