"""Environment Ray gives tasks and actors: OMP_NUM_THREADS is the number of CPUs the task or
actor holds (at least 1) unless the user set it, in plain tasks, actors and tasks inside a
placement group bundle."""

import pytest

pytestmark = pytest.mark.timeout(120)


def test_omp_num_threads_follows_the_cpus_held(run_script):
    world = run_script("""
        import os
        import mpiray as ray
        from mpiray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        ray.init(num_cpus=3)

        @ray.remote
        def omp():
            return os.environ.get("OMP_NUM_THREADS")

        @ray.remote(num_cpus=0)
        class A:
            def omp(self):
                return os.environ.get("OMP_NUM_THREADS")

        assert ray.get(omp.remote()) == "1"
        assert ray.get(omp.options(num_cpus=3).remote()) == "3"
        assert ray.get(omp.options(num_cpus=2).remote()) == "2"
        assert ray.get(omp.options(num_cpus=0.5).remote()) == "1"
        assert ray.get(A.remote().omp.remote()) == "1"
        assert ray.get(A.options(num_cpus=2).remote().omp.remote()) == "2"
        pg = ray.util.placement_group([{"CPU": 3}])
        ray.get(pg.ready())
        strategy = PlacementGroupSchedulingStrategy(placement_group=pg)
        assert ray.get(omp.options(num_cpus=3, scheduling_strategy=strategy).remote()) == "3"
        print("OK")
    """)
    assert "OK" in world.stdout, world.stdout + world.stderr


def test_omp_num_threads_set_by_the_user_is_kept(run_script):
    world = run_script("""
        import os
        import mpiray as ray

        ray.init(num_cpus=2)

        @ray.remote(num_cpus=2)
        def omp():
            return os.environ.get("OMP_NUM_THREADS")

        assert ray.get(omp.remote()) == "7"
        print("OK")
    """, env={"OMP_NUM_THREADS": "7"})
    assert "OK" in world.stdout, world.stdout + world.stderr
