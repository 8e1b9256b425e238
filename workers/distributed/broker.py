"""Kombu's Redis transport, with one fix: a broker that restarts while the worker reconnects
does not end the worker.

When Redis goes away, the worker's consumer closes its connection and reconnects. Closing the
connection closes its channel, which first puts the unacknowledged messages back, and for that
asks for a new Redis connection pool. If the connection's transport was already detached from
it (a second restart during the reconnect, or the connection closed under a task that acks
late), kombu's Redis channel fails with ``AttributeError: 'NoneType' object has no attribute
'hostname'`` instead of a connection error; Celery treats that as unrecoverable and the worker
exits (with status 0). Found by the chaos soak (tests/chaos.py): a worker on a Redis restarted
every few seconds ended within two minutes (kombu 5.7.0).

Here the channel says so with a connection error, which kombu and Celery handle: the close
goes on and the consumer reconnects. The messages it could not put back stay in Redis's
unacknowledged set, which Redis hands out again after the visibility timeout; the catalog's
leases bring their documents back sooner.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:  # the connection was closed under this channel
            raise RedisConnectionError("the broker connection is closed; reconnecting")
        params: dict[str, Any] = super()._connparams(asynchronous)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
