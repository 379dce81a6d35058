"""mpiray.util: ActorPool, Queue, multiprocessing.Pool, and ray.actor.exit_actor() (shared
embedded cluster of 2 workers)."""

import asyncio
import itertools
import threading
import time
import uuid

import pytest

import mpiray as ray
from mpiray import exceptions as rex
from mpiray.util import ActorPool
from mpiray.util.multiprocessing import Pool
from mpiray.util.queue import Empty, Full, Queue
from conftest import wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("ray_cluster")]


def test_util_names_are_reachable():
    import mpiray.util
    import mpiray.util.multiprocessing
    import mpiray.util.queue
    assert ray.util.ActorPool is ActorPool
    assert ray.util.queue.Queue is Queue and ray.util.queue.Empty is Empty
    assert ray.util.multiprocessing.Pool is Pool
    assert ray.actor.exit_actor is mpiray.actor.exit_actor
    import queue as std_queue
    assert issubclass(Empty, std_queue.Empty) and issubclass(Full, std_queue.Full)


# ------------------------------------------------------------------ ActorPool


@ray.remote
class Doubler:
    def double(self, v, delay=0.0):
        time.sleep(delay)
        if v == "boom":
            raise ValueError("boom")
        return 2 * v


def double(actor, v):
    # The first value is slow, so that it finishes last.
    return actor.double.remote(v, 0.5 if v == 0 else 0.01)


def test_actor_pool_map_is_ordered_map_unordered_is_not():
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(double, range(6))) == [0, 2, 4, 6, 8, 10]
    unordered = list(pool.map_unordered(double, range(6)))
    assert sorted(unordered) == [0, 2, 4, 6, 8, 10]
    assert unordered[-1] == 0, unordered  # the slow one comes last
    assert not pool.has_next()


def test_actor_pool_get_next_timeout():
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(lambda a, v: a.double.remote(v, 1.0), 1)
    pool.submit(lambda a, v: a.double.remote(v), 2)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    assert time.monotonic() - start < 0.9
    assert pool.has_next()
    assert pool.get_next() == 2  # the timed-out result is still the next one
    assert pool.get_next() == 4
    # ignore_if_timedout drops the slow task: the next result is the following one.
    pool.submit(lambda a, v: a.double.remote(v, 1.0), 10)
    pool.submit(lambda a, v: a.double.remote(v), 20)
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert pool.get_next() == 40
    assert not pool.has_next()
    # get_next_unordered with a timeout too.
    pool.submit(lambda a, v: a.double.remote(v, 1.0), 3)
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.05)
    assert pool.get_next_unordered(timeout=10) == 6
    with pytest.raises(StopIteration):
        pool.get_next()


def test_actor_pool_submit_queues_when_busy_and_membership():
    a = Doubler.remote()
    pool = ActorPool([a])
    assert pool.has_free()
    pool.submit(lambda actor, v: actor.double.remote(v, 0.2), 1)
    pool.submit(lambda actor, v: actor.double.remote(v), 2)  # waits for the actor
    assert not pool.has_free()
    assert pool.pop_idle() is None
    assert pool.get_next() == 2
    assert pool.get_next() == 4
    assert pool.pop_idle() == a
    assert not pool.has_free()
    pool.submit(lambda actor, v: actor.double.remote(v), 3)  # no actor: queued
    assert pool.has_next()
    pool.push(a)  # the queued work starts on it
    assert pool.get_next(timeout=10) == 6
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(a)
    # Mixing orders: a result taken out of order cannot be awaited in order any more.
    b = Doubler.remote()
    pool.push(b)
    pool.submit(lambda actor, v: actor.double.remote(v, 0.5), 1)
    pool.submit(lambda actor, v: actor.double.remote(v), 2)
    assert pool.get_next_unordered() == 4
    with pytest.raises(ValueError):
        pool.get_next()


def test_actor_pool_task_error_is_raised_and_actor_returns():
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.double.remote(v), "boom")
    with pytest.raises(ValueError, match="boom"):
        pool.get_next()
    assert pool.has_free()
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2])) == [2, 4]
    # map() drops what earlier submissions had not returned yet (as in Ray).
    pool.submit(lambda a, v: a.double.remote(v, 0.3), 100)
    pool.submit(lambda a, v: a.double.remote(v), 200)  # queued: never runs
    assert list(pool.map(lambda a, v: a.double.remote(v), [3])) == [6]
    assert not pool.has_next()


# ------------------------------------------------------------------ Queue


def test_queue_fifo_sizes_and_nowait_errors():
    q = Queue(maxsize=3)
    assert q.empty() and not q.full() and q.size() == 0 and len(q) == 0
    for i in range(3):
        q.put(i)
    assert q.full() and q.qsize() == 3
    with pytest.raises(Full):
        q.put_nowait(99)
    with pytest.raises(Full):
        q.put(99, block=False)
    assert [q.get(), q.get_nowait()] == [0, 1]
    with pytest.raises(Full):
        q.put_nowait_batch([5, 6, 7])  # all or nothing
    assert q.qsize() == 1
    q.put_nowait_batch([5, 6])
    with pytest.raises(Empty):
        q.get_nowait_batch(4)
    assert q.get_nowait_batch(3) == [2, 5, 6]
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    q.shutdown()


def test_queue_blocking_timeouts_raise_empty_and_full():
    q = Queue(maxsize=1)
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.5)
    assert 0.45 <= time.monotonic() - start < 5
    q.put("x")
    start = time.monotonic()
    with pytest.raises(Full):
        q.put("y", timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 5
    assert q.get(timeout=0) == "x"
    q.shutdown()


@ray.remote
def put_later(q, item, delay):
    time.sleep(delay)
    q.put(item)
    return True


def test_queue_blocking_get_wakes_on_put():
    q = Queue()
    ref = put_later.remote(q, "hello", 0.5)
    start = time.monotonic()
    assert q.get(timeout=30) == "hello"
    assert time.monotonic() - start < 10  # woken by the put, not by the timeout
    assert ray.get(ref) is True
    q.shutdown()


@ray.remote
def produce(q, n):
    for i in range(n):
        q.put(i)  # blocks while the small queue is full
    q.put(None)
    return n


@ray.remote
class Consumer:
    def consume(self, q):
        out = []
        while True:
            item = q.get(timeout=30)
            if item is None:
                return out
            out.append(item)


def test_queue_producer_task_to_consumer_actor():
    q = Queue(maxsize=2)
    consumer = Consumer.remote()
    got = consumer.consume.remote(q)
    done = produce.remote(q, 25)
    assert ray.get(got, timeout=60) == list(range(25))
    assert ray.get(done) == 25
    assert q.empty()
    q.shutdown()


def test_queue_async_api():
    q = Queue(maxsize=1)

    async def main():
        await q.put_async(1)
        with pytest.raises(Full):
            await q.put_async(2, timeout=0.1)
        with pytest.raises(Full):
            await q.put_async(2, block=False)
        first = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(timeout=0.1)
        with pytest.raises(Empty):
            await q.get_async(block=False)
        return first

    assert asyncio.run(main()) == 1
    q.shutdown()


@ray.remote
def queue_size(q):
    return q.size()


def test_queue_shutdown():
    import pickle
    for force in (False, True):
        q = Queue()
        q.put(1)
        assert ray.get(queue_size.remote(q)) == 1
        copy = pickle.loads(pickle.dumps(q))  # as a task or actor would hold it
        start = time.monotonic()
        q.shutdown(force=force, grace_period_s=5)
        assert time.monotonic() - start < 4  # nothing was working: no wait for the grace period
        with pytest.raises(RuntimeError, match="shut down"):
            q.put(2)
        q.shutdown()  # twice is fine
        with pytest.raises(rex.ActorDiedError):
            ray.get(queue_size.remote(copy))


# ------------------------------------------------------------------ multiprocessing.Pool

_POOL_STATE = {}


def square(x):
    return x * x


def slow_identity(x, delay=0.2):
    time.sleep(delay)
    return x


def first_is_slow(x):
    time.sleep(0.6 if x == 0 else 0.01)
    return x


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def call_id(x):
    return ray.get_runtime_context().task_id


def set_greeting(greeting, q):
    _POOL_STATE["greeting"] = greeting
    q.put(greeting)


def read_greeting(x):
    return _POOL_STATE.get("greeting"), x


def test_pool_map_matches_builtin_map():
    with Pool() as pool:
        assert pool._processes == 2  # the cluster's CPUs
        data = list(range(37))
        assert pool.map(square, data) == list(map(square, data))
        assert pool.map(square, []) == []
        assert pool.starmap(pow, [(2, 3), (3, 2), (10, 0)]) == [8, 9, 1]
        assert pool.apply(square, (9,)) == 81
        assert pool.apply(slow_identity, (5,), {"delay": 0}) == 5
        assert pool.map_async(square, range(5)).get(timeout=30) == [0, 1, 4, 9, 16]
        assert pool.starmap_async(pow, [(2, 5)]).get(timeout=30) == [32]
        # Functions defined in the caller travel by value.
        assert pool.map(lambda x: x + 1, [1, 2]) == [2, 3]


def test_pool_chunksize_is_honoured():
    with Pool(2) as pool:
        ids = pool.map(call_id, range(10), chunksize=5)
        assert len(set(ids[:5])) == 1 and len(set(ids[5:])) == 1 and ids[0] != ids[5]
        ids = pool.map(call_id, range(6), chunksize=1)
        assert len(set(ids)) == 6
        ids = list(pool.imap(call_id, range(6), chunksize=3))
        assert len(set(ids)) == 2
        with pytest.raises(ValueError):
            pool.map(square, range(3), chunksize=0)


def test_pool_imap_keeps_order_and_is_lazy():
    with Pool(2) as pool:
        # Item 0 finishes last; imap still yields in input order, imap_unordered does not.
        assert list(pool.imap(first_is_slow, range(6))) == list(range(6))
        unordered = list(pool.imap_unordered(first_is_slow, range(6)))
        assert sorted(unordered) == list(range(6)) and unordered[-1] == 0, unordered

        pulled = []

        def endless():
            for i in itertools.count():
                pulled.append(i)
                yield i

        it = pool.imap(slow_identity, endless())
        assert [next(it) for _ in range(3)] == [0, 1, 2]
        time.sleep(1.0)  # time for many more items, were the input read eagerly
        assert len(pulled) <= 3 + 2 * 2 + 1, pulled  # read results + a window of 2 per actor
        assert next(it) == 3
        with pytest.raises(TimeoutError):
            pool.imap(slow_identity, [1]).next(timeout=0.01)


def test_pool_async_callbacks():
    with Pool(2) as pool:
        got, errors = [], []
        done = threading.Event()
        r = pool.apply_async(square, (7,), callback=lambda v: (got.append(v), done.set()))
        assert r.get(timeout=30) == 49
        assert done.wait(10) and got == [49]
        assert r.ready() and r.successful()

        failed = threading.Event()
        r = pool.map_async(fail_on_three, range(6), callback=got.append,
                           error_callback=lambda e: (errors.append(e), failed.set()))
        r.wait(30)
        assert failed.wait(10)
        assert r.ready() and not r.successful()
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        with pytest.raises(ValueError, match="bad item 3") as info:
            r.get()
        assert "fail_on_three" in str(info.value.__cause__)  # the remote traceback
        assert got == [49]  # no success callback for the failed map
        with pytest.raises(ValueError, match="bad item 3"):
            pool.apply(fail_on_three, (3,))

        slow = pool.apply_async(slow_identity, (1, 1.0))
        with pytest.raises(ValueError, match="not ready"):
            slow.successful()
        from multiprocessing import TimeoutError as MpTimeoutError
        with pytest.raises(MpTimeoutError):
            slow.get(timeout=0.05)
        assert slow.get(timeout=30) == 1


def test_pool_initializer_runs_once_per_actor():
    greeting = uuid.uuid4().hex
    q = Queue()
    with Pool(2, initializer=set_greeting, initargs=(greeting, q)) as pool:
        results = pool.map(read_greeting, range(8), chunksize=1)
        assert results == [(greeting, i) for i in range(8)]
        assert q.qsize() == 2
    q2 = Queue()
    with Pool(2, initializer=set_greeting, initargs=("again", q2), maxtasksperchild=1) as pool:
        assert [g for g, _ in pool.map(read_greeting, range(4), chunksize=1)] == ["again"] * 4
        assert q2.qsize() == 4  # a new actor (and initializer run) for every chunk
    q.shutdown()
    q2.shutdown()


MAIN_SCRIPT_WITH_INITIALIZER = """
import mpiray as ray
from mpiray.util.multiprocessing import Pool

model = None
offset = 1

def helper(x):
    return model["k"] * x + offset

def load(k):
    global model
    model = {"k": k}

def work(x):
    return helper(x)

if __name__ == "__main__":
    ray.init(num_cpus=2)
    with Pool(2, initializer=load, initargs=(10,)) as pool:
        print("first", pool.map(work, range(4)))
        print("lambda", pool.map(lambda x: model["k"] - x, [1]))
        offset = 100  # like multiprocessing's workers, the actors keep what they had
        print("kept", pool.map(work, [1]))
    with Pool(1, initializer=load, initargs=(7,)) as pool:  # new actors: the new value
        print("fresh", pool.map(work, [1]))
    ray.shutdown()
"""


def test_pool_initializer_globals_of_a_main_script(run_script):
    # The usual multiprocessing pattern: the initializer sets a global of the script that the
    # mapped function reads (functions of __main__ travel by value; Ray's Pool cannot do this).
    world = run_script(MAIN_SCRIPT_WITH_INITIALIZER, timeout=90)
    assert world.returncode == 0, world
    assert "first [1, 11, 21, 31]" in world.stdout, world
    assert "lambda [9]" in world.stdout, world
    assert "kept [11]" in world.stdout, world
    assert "fresh [107]" in world.stdout, world


def record_and_sleep(x, q):
    q.put(x)
    time.sleep(0.5)
    return x


def test_pool_terminate_stops_work():
    started = Queue()
    pool = Pool(2)
    r = pool.starmap_async(record_and_sleep, [(i, started) for i in range(20)], chunksize=1)
    assert started.get(timeout=30) in range(20)
    t0 = time.monotonic()
    pool.terminate()
    assert time.monotonic() - t0 < 5
    with pytest.raises(rex.TaskCancelledError):
        r.get(timeout=10)
    time.sleep(1.0)  # anything still running would record itself meanwhile
    assert started.qsize() + 1 <= 4, "work went on after terminate()"
    with pytest.raises(ValueError, match="not running"):
        pool.apply(square, (1,))
    # The actors are gone: their CPUs (none held by default) and threads are released.
    assert wait_for(lambda: ray.available_resources().get("CPU") == 2.0, timeout=10)
    started.shutdown()


def test_pool_close_and_join():
    pool = Pool(2)
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    r = pool.map_async(slow_identity, range(4), chunksize=1)
    it = pool.imap(square, range(20))  # not read before close(): still computed
    pool.close()
    with pytest.raises(ValueError, match="not running"):
        pool.map(square, [1])
    pool.join()
    assert r.ready() and r.get() == [0, 1, 2, 3]
    assert list(it) == [x * x for x in range(20)]


def test_pool_processes_argument():
    with pytest.raises(ValueError):
        Pool(0)
    with pytest.raises(ValueError):
        Pool(1, maxtasksperchild=0)
    with Pool(1, ray_remote_args={"num_cpus": 1}) as pool:
        assert pool.map(square, range(3)) == [0, 1, 4]
        assert wait_for(lambda: ray.available_resources().get("CPU") == 1.0, timeout=10)
    assert wait_for(lambda: ray.available_resources().get("CPU") == 2.0, timeout=10)


# ------------------------------------------------------------------ exit_actor


@ray.remote
class Quitter:
    def __init__(self):
        self.calls = 0

    def ping(self):
        self.calls += 1
        return self.calls

    def quit(self):
        try:
            ray.actor.exit_actor()
        except Exception:  # exit_actor() is not an ordinary exception
            return "swallowed"
        return "not reached"

    async def quit_async(self):
        ray.actor.exit_actor()


@ray.remote
class QuitAtOnce:
    def __init__(self):
        ray.actor.exit_actor()

    def ping(self):
        return "alive"


@ray.remote
def exit_in_task():
    try:
        ray.actor.exit_actor()
    except TypeError as e:
        return str(e)


def test_exit_actor_ends_the_actor():
    a = Quitter.options(name="quitter", max_restarts=2).remote()
    assert ray.get(a.ping.remote()) == 1
    with pytest.raises(rex.ActorDiedError, match="exit_actor"):
        ray.get(a.quit.remote())
    with pytest.raises(rex.ActorDiedError):
        ray.get(a.ping.remote())
    time.sleep(0.3)  # no restart happens, even with max_restarts
    with pytest.raises(rex.ActorDiedError):
        ray.get(a.ping.remote())
    assert wait_for(lambda: _name_free("quitter"), timeout=10)
    # An async method too.
    b = Quitter.remote()
    with pytest.raises(rex.ActorDiedError, match="exit_actor"):
        ray.get(b.quit_async.remote())
    with pytest.raises(rex.ActorDiedError):
        ray.get(b.ping.remote())
    # In the constructor.
    c = QuitAtOnce.remote()
    with pytest.raises(rex.ActorDiedError, match="exit_actor"):
        ray.get(c.ping.remote())
    # Outside an actor: TypeError.
    with pytest.raises(TypeError, match="non-actor"):
        ray.actor.exit_actor()
    assert "non-actor" in ray.get(exit_in_task.remote())


def _name_free(name):
    try:
        ray.get_actor(name)
        return False
    except ValueError:
        return True
