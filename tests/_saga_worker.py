"""A saga-runner process for the SIGKILL test (run as a script).

    python _saga_worker.py STORE KILL_AFTER

Runs the OrderFulfillment saga (declining the payment of ``o-1``) on the Parquet store at
STORE. With KILL_AFTER > 0 the process kills itself with SIGKILL right after the
KILL_AFTER-th command's events are stored - before the idempotency key is recorded and
before the saga commits its checkpoint: the worst moment to die.
"""

from __future__ import annotations

import os
import signal
import sys

from esnotebook.examples.fulfillment import OrderFulfillment
from esnotebook.faults import FaultPlan
from esnotebook.sagas import SagaRunner
from esnotebook.store import ParquetEventStore

#: The fault plan both the killed run and the restarted one use.
PLAN = FaultPlan(seed=0).permanent("ChargePayment", when=lambda c: c.order_id == "o-1", reason="card declined")


def main(path: str, kill_after: int) -> None:
    store = ParquetEventStore(path)
    runner = SagaRunner(OrderFulfillment(), store, faults=PLAN)
    sent = 0

    def killer(command, next):
        nonlocal sent
        result = next(command)
        sent += 1
        if sent == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    runner.bus.use(killer)  # innermost: after the handler's append, before anything else
    runner.catch_up()
    store.close()
    print("done", runner.summary())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
