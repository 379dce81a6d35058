"""The event loop of an async actor (mpiray._worker_hooks._actor_loop) is stopped by a finalizer
when the actor's instance is freed. The collector can run that finalizer in any thread, also
in a loop thread that _actor_loop is starting while it holds its lock: the finalizer must not
wait for that lock (it did: every later call to an async actor of the worker hung)."""
import threading

import pytest

from mpiray import _worker_hooks as hooks

pytestmark = pytest.mark.timeout(30)


class Instance:
    pass


def test_finalizer_of_a_dead_actor_does_not_wait_for_the_loop_lock():
    inst = Instance()
    loop = hooks._actor_loop(inst, "dead")
    assert hooks._actor_loops.get(id(inst)) is loop
    holder = [inst]
    del inst
    done = threading.Event()

    def free_it():                    # another thread frees the instance: its finalizer runs here
        holder.clear()
        done.set()

    with hooks._actor_loops_lock:     # as _actor_loop holds it while a new loop thread starts
        t = threading.Thread(target=free_it)
        t.start()
        assert done.wait(5), "the finalizer waited for _actor_loops_lock"
    t.join(5)
    assert loop not in hooks._actor_loops.values()
    for _ in range(500):              # the loop itself stops
        if not loop.is_running():
            break
        threading.Event().wait(0.01)
    assert not loop.is_running()
