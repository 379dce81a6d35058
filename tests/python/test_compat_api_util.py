"""ray.util details Ray programs and Ray's tests rely on: multiprocessing.Pool (starting
mpiray with one CPU per process, the CPU check, initializers done when the constructor returns,
imap/imap_unordered yielding a failed item's exception, error propagation of map/apply),
JoinableQueue, the joblib backend, ActorPool's pending submissions and ignore_if_timedout."""

import os
import time

import pytest

import mpiray as ray

pytestmark = pytest.mark.timeout(180)


def test_pool_semantics_as_ray(run_script):
    world = run_script("""
        import os, tempfile, time
        import mpiray as ray
        from mpiray.util.multiprocessing import Pool, JoinableQueue, TimeoutError
        import multiprocessing

        assert JoinableQueue is multiprocessing.JoinableQueue

        def init(dirname):
            with open(os.path.join(dirname, str(os.getpid())), "w") as f:
                f.write("hello")

        def f(x):
            if x in (2, 5):
                raise ValueError(f"bad {x}")
            time.sleep(0.01 * (x % 3))
            return x * 10

        with tempfile.TemporaryDirectory() as d:
            pool = Pool(processes=2, initializer=init, initargs=(d,))
            # mpiray was started for the pool, with one CPU per process
            assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
            # every initializer has run when the constructor returns, one per process
            assert len(os.listdir(d)) == 2, os.listdir(d)
            ordered = list(pool.imap(f, range(7), chunksize=2))
            assert [type(v).__name__ if isinstance(v, Exception) else v for v in ordered] == \\
                [0, 10, "ValueError", 30, 40, "ValueError", 60], ordered
            unordered = list(pool.imap_unordered(f, range(7)))
            assert sorted(v for v in unordered if not isinstance(v, Exception)) == [0, 10, 30, 40, 60]
            assert sum(isinstance(v, ValueError) for v in unordered) == 2
            try:
                pool.map(f, range(7))
            except ValueError as e:
                print("map raised", e)
            res = pool.apply_async(f, (5,))
            res.wait(30)
            assert res.ready() and not res.successful()
            try:
                res.get()
            except ValueError:
                print("apply raised")
            pool.terminate()
            pool.join()
        try:
            Pool(processes=3)
        except ValueError as e:
            assert "only 2 CPUs" in str(e), e
            print("refused")
        ray.shutdown()
    """)
    assert world.returncode == 0, world
    assert "map raised bad 2" in world.stdout and "apply raised" in world.stdout
    assert "refused" in world.stdout


def test_pool_initializer_failure_fails_the_constructor(run_script):
    world = run_script("""
        import mpiray as ray
        from mpiray.util.multiprocessing import Pool

        def broken():
            raise RuntimeError("initializer broke")

        ray.init(num_cpus=2)
        try:
            Pool(processes=2, initializer=broken)
        except Exception as e:  # the actor's constructor failed (ActorDiedError, as Ray)
            assert "initializer broke" in str(e), e
            print("failed as expected", type(e).__name__)
        ray.shutdown()
    """)
    assert world.returncode == 0, world
    assert "failed as expected" in world.stdout


def test_joblib_backend(run_script):
    pytest.importorskip("joblib")
    world = run_script("""
        import os, time
        import mpiray as ray
        from mpiray.util.joblib import register_ray
        from joblib import Parallel, delayed, parallel_backend

        def work(i):
            start = time.time()
            time.sleep(1.0)
            return i, start, os.getpid()

        ray.init(num_cpus=2)
        register_ray()
        with parallel_backend("ray", n_jobs=-1):
            out = Parallel()(delayed(work)(i) for i in range(2))
        assert [i for i, _, _ in out] == [0, 1]
        starts = [s for _, s, _ in out]
        assert abs(starts[0] - starts[1]) < 0.9, starts   # ran at the same time
        assert len({p for _, _, p in out}) == 2            # in two processes
        with parallel_backend("ray"):
            squares = Parallel(n_jobs=2)(delayed(pow)(i, 2) for i in range(20))
        assert squares == [i * i for i in range(20)]
        print("joblib ok")
        ray.shutdown()
    """)
    assert world.returncode == 0, world
    assert "joblib ok" in world.stdout


@pytest.mark.usefixtures("ray_cluster")
def test_actor_pool_pending_submits_and_ignore_if_timedout():
    from mpiray.util import ActorPool

    @ray.remote
    class Worker:
        def double(self, x, delay=0.0):
            time.sleep(delay)
            return 2 * x

    a1, a2 = Worker.remote(), Worker.remote()
    pool = ActorPool([a1])
    pool.submit(lambda a, v: a.double.remote(v), 1)
    pool.submit(lambda a, v: a.double.remote(v), 2)
    assert len(pool._pending_submits) == 1 and not pool.has_free()
    pool.push(a2)  # takes the pending submission at once
    assert len(pool._pending_submits) == 0 and not pool.has_free()
    assert sorted([pool.get_next_unordered(), pool.get_next_unordered()]) == [2, 4]
    pool.submit(lambda a, v: a.double.remote(v, 5.0), 3)
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.1)
    assert pool.get_next_unordered(timeout=0.1, ignore_if_timedout=True) is None
    assert not pool.has_next()
    ray.kill(a1)
    ray.kill(a2)


def test_pools_inside_pool_tasks(run_script):
    # Pool(ray_address="auto") inside the functions a pool runs (Ray's recursive pools): the
    # pool's actors hold no CPU, so nested pools do not deadlock a 1-CPU cluster.
    world = run_script("""
        import math
        import mpiray as ray
        from mpiray.util.multiprocessing import Pool

        def inner(_):
            # (sized by the cluster's CPUs, as Ray: a task sees cluster_resources() too)
            with Pool(ray_address="auto") as pool:
                return list(pool.map(math.sqrt, range(0, 2)))

        ray.init(num_cpus=1)
        with Pool(ray_address="auto") as pool:
            print("nested", pool.map(inner, range(2)))
        ray.shutdown()
    """)
    assert world.returncode == 0, world
    assert "nested [[0.0, 1.0], [0.0, 1.0]]" in world.stdout


def test_forked_children_can_be_terminated(run_script):
    # A stdlib multiprocessing.Pool (fork) beside mpiray: its workers must die on terminate()
    # (the runtime blocks the termination signals in the driver's threads; a forked child gets
    # them back).
    world = run_script("""
        import multiprocessing as mp, time
        import mpiray as ray

        def square(x):
            return x * x

        ray.init(num_cpus=1)
        pool = mp.get_context("fork").Pool(processes=2)
        print("sum", sum(pool.map(square, range(10))))
        t = time.time()
        pool.terminate()
        pool.join()
        print("joined", time.time() - t < 10)
        ray.shutdown()
    """, timeout=60)
    assert world.returncode == 0, world
    assert "sum 285" in world.stdout and "joined True" in world.stdout


def test_pool_imap_of_a_non_iterable_warns_and_maps_it(run_script):
    world = run_script("""
        import warnings
        import mpiray as ray
        from mpiray.util.multiprocessing import Pool

        def double(x):
            return 2 * x

        pool = Pool(processes=2)
        for method in (pool.imap, pool.imap_unordered):
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                out = list(method(double, 21))
            assert out == [42], out
            assert any("Passing a non-iterable argument" in str(x.message) for x in w), w
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert list(pool.imap(double, [1, 2])) == [2, 4]
        assert not [x for x in w if "non-iterable" in str(x.message)]
        pool.terminate()
        print("OK")
    """)
    assert world.returncode == 0 and "OK" in world.stdout, world
