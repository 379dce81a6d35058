"""Placement-group details of Ray's API: the reserved resource name 'bundle', the deprecation
warning of the older placement_group= option (with its docs link), and
ray.util.state.get_actor(id) giving an actor's row (its node) by the id its handle shows."""

import pytest

pytestmark = pytest.mark.timeout(120)


def test_placement_group_details_as_ray(run_script):
    from test_lifecycle import last_json
    world = run_script("""
        import json, warnings
        import mpiray as ray
        from mpiray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        from mpiray.util.state import get_actor

        ray.init(num_cpus=2)
        out = {}
        try:
            ray.util.placement_group(bundles=[{"bundle": 1}])
            out["reserved_group"] = "accepted"
        except ValueError as e:
            out["reserved_group"] = "bundle" in str(e)

        @ray.remote
        class A:
            def node(self):
                return ray.get_runtime_context().get_node_id()

        pg = ray.util.placement_group([{"CPU": 1}])
        ray.get(pg.ready())
        try:
            A.options(resources={"bundle": 1},
                      scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()
            out["reserved_option"] = "accepted"
        except ValueError as e:
            out["reserved_option"] = "bundle" in str(e)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            a = A.options(placement_group=pg, placement_group_bundle_index=0).remote()
        out["warned"] = [str(x.message) for x in w if "placement_group parameter is deprecated" in str(x.message)]
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            b = A.options(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
        out["quiet"] = [str(x.message) for x in w if "deprecated" in str(x.message)]
        row = get_actor(id=a._actor_id.hex())
        out["row"] = [row.actor_id == a._actor_id.hex(), row.state, row.node_id == ray.get(a.node.remote())]
        out["missing"] = get_actor(id="ff" * 8)
        print("RESULT " + json.dumps(out))
    """)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["reserved_group"] is True and out["reserved_option"] is True, out
    assert len(out["warned"]) == 1 and "docs.ray.io/en/" in out["warned"][0], out
    assert out["quiet"] == [], out
    assert out["row"] == [True, "ALIVE", True], out
    assert out["missing"] is None, out


def test_bundle_pinned_work_takes_from_the_group_as_a_whole(run_script):
    # As Ray: work pinned to bundle i takes its CPUs from the bundle and from the group's whole
    # (wildcard) amount, so work with bundle index -1 sees only what is left in the group.
    from test_lifecycle import last_json
    world = run_script("""
        import json
        import mpiray as ray
        from mpiray.util.scheduling_strategies import PlacementGroupSchedulingStrategy as S

        ray.init(num_cpus=4)
        pg = ray.util.placement_group([{"CPU": 2}] * 2)
        ray.get(pg.ready())

        @ray.remote(num_cpus=1)
        class A:
            def v(self):
                return 1

        def group_cpus():
            avail = ray.available_resources()
            return {("whole" if k.count("_") == 2 else "bundle" + k.split("_")[2]): v
                    for k, v in avail.items() if k.startswith("CPU_group_")}

        out = {}
        a = A.options(scheduling_strategy=S(pg, placement_group_bundle_index=0)).remote()
        ray.get(a.v.remote())
        out["one_pinned"] = group_cpus()
        b = A.options(scheduling_strategy=S(pg, placement_group_bundle_index=1)).remote()
        ray.get(b.v.remote())
        out["two_pinned"] = group_cpus()
        # The group's last 2 CPUs, taken with index -1: a later 1-CPU actor pinned to bundle 0
        # finds the bundle's CPU but not the group's, and waits until they are given back.
        c = A.options(num_cpus=2, scheduling_strategy=S(pg)).remote()
        ray.get(c.v.remote())
        out["whole_taken"] = group_cpus()
        d = A.options(scheduling_strategy=S(pg, placement_group_bundle_index=0)).remote()
        ready, _ = ray.wait([d.v.remote()], timeout=1.5)
        out["pinned_placed"] = bool(ready)
        ray.kill(c)
        ready, _ = ray.wait([d.v.remote()], timeout=30)
        out["placed_after_kill"] = bool(ready)
        print("RESULT " + json.dumps(out))
    """)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["one_pinned"] == {"whole": 3.0, "bundle0": 1.0, "bundle1": 2.0}, out
    assert out["two_pinned"] == {"whole": 2.0, "bundle0": 1.0, "bundle1": 1.0}, out
    # (available_resources leaves out what is used up, as Ray's)
    assert out["whole_taken"] == {"bundle0": 1.0, "bundle1": 1.0}, out
    assert out["pinned_placed"] is False, out
    assert out["placed_after_kill"] is True, out


def test_task_blocked_in_get_lends_only_its_cpu(run_script):
    # As Ray: while a task waits in get(), its CPU is lent to other work, its memory (and GPUs,
    # custom resources) stays held, so a second task needing that memory waits.
    from test_lifecycle import last_json
    world = run_script("""
        import json, time
        import mpiray as ray

        ray.init(num_workers=2, _memory=1000 * 1024**2, resources={"licence": 1})
        MB = 1024**2

        @ray.remote(num_cpus=0)
        def hold(s):
            time.sleep(s)
            return 1

        @ray.remote(memory=600 * MB, resources={"licence": 1})
        def blocked(s):
            return ray.get(hold.remote(s))

        @ray.remote(memory=600 * MB)
        def needs_memory():
            return time.time()

        @ray.remote
        def needs_cpu():
            return time.time()

        t0 = time.time()
        b = blocked.remote(3)
        time.sleep(1.0)
        avail = ray.available_resources()
        out = {"memory_mb": avail.get("memory", 0) / MB, "licence": avail.get("licence", 0),
               "cpu": avail.get("CPU", 0)}
        m = needs_memory.remote()
        c = needs_cpu.remote()
        out["cpu_task_after_s"] = ray.get(c) - t0
        out["memory_task_after_s"] = ray.get(m) - t0
        out["blocked_done"] = ray.get(b)
        print("RESULT " + json.dumps(out))
    """, timeout=60)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert round(out["memory_mb"]) == 400, out   # the blocked task keeps its 600 MB
    assert out["licence"] == 0, out
    assert out["cpu"] == 2, out                  # and lends its CPU
    assert out["cpu_task_after_s"] < 2.5, out    # ran on the lent CPU, while it was blocked
    assert out["memory_task_after_s"] >= 3, out  # waited for the memory to come back
    assert out["blocked_done"] == 1, out
