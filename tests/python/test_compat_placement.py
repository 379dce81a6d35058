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
