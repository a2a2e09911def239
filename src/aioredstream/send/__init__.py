"""The send path: commands on connections, one sender per topology.

`Sender` is what the producer talks to:
``send_delay(slices) -> ids`` and ``send_queue(slices, ids)`` for bulk calls, and
``delay_one`` / ``queue_one`` for single calls. `sender_for` picks the
implementation: `NodeSender` for one node or a
Sentinel's primary (the wire and the coalescer), `ClusterSender`
for a Redis Cluster (the same, per node). WAIT / WAITAOF replies are
checked here (`aioredstream.send.acks`), not in the producer.
"""
