"""The worker side: messages, the lock, and the consumer, delayer and trimmer.

Import these from `aioredstream` (or the documented ``aioredstream.consumer``,
``aioredstream.delayer``, ... modules); this package is the inside.
"""
