"""Job slots: how many jobs may run at once on each account.

`JobSlots` / `SlotHold` are the in-process slots the client uses (see `.local`). A
`SlotPool` is the backend interface for slots shared beyond one object: `LocalSlotPool`
(in-process, the default) and `RedisSlotPool` (every process and host on the same Redis;
``pip install "kling-async[redis]"``).
"""

from .local import JobSlots, SlotHold
from .pool import Lease, LocalSlotPool, SlotPool
from .redis import RedisSlotPool

__all__ = [
    "JobSlots",
    "Lease",
    "LocalSlotPool",
    "RedisSlotPool",
    "SlotHold",
    "SlotPool",
]
