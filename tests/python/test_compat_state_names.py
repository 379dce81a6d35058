"""Names and ids as Ray shows them: list_tasks names an actor call "Class.method" and gives
finished tasks their task id (the one get_runtime_context().get_task_id() gave inside);
get_task_function_name() of an async actor's method is its qualified name (Ray's), of a
threaded actor's "module.Class.method"."""

import pytest

pytestmark = pytest.mark.timeout(120)


def test_task_names_and_ids_as_ray(run_script):
    from test_lifecycle import last_json
    world = run_script("""
        import json, time
        import mpiray as ray
        from mpiray.util.state import list_tasks

        ray.init(num_cpus=2)

        def make():
            @ray.remote
            class Async:
                async def f(self):
                    ctx = ray.get_runtime_context()
                    return ctx.get_task_id(), ctx.get_task_function_name()
            return Async

        @ray.remote
        class Plain:
            def g(self):
                ctx = ray.get_runtime_context()
                return ctx.get_task_id(), ctx.get_task_function_name()

        @ray.remote
        def h():
            return ray.get_runtime_context().get_task_id()

        a = make().remote()
        p = Plain.remote()
        (atid, afn), (ptid, pfn), htid = ray.get([a.f.remote(), p.g.remote(), h.remote()])
        out = {"afn": afn, "pfn": pfn}
        deadline = time.time() + 10
        while time.time() < deadline:
            rows = {r.name: r.task_id for r in list_tasks() if r.state == "FINISHED"}
            if {"Async.f", "Plain.g", "h"} <= set(rows):
                break
            time.sleep(0.1)
        out["ids"] = [rows.get("Async.f") == atid, rows.get("Plain.g") == ptid, rows.get("h") == htid]
        print("RESULT " + json.dumps(out))
    """)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["afn"] == "__main__.make.<locals>.Async.f", out
    assert out["pfn"] == "__main__.Plain.g", out
    assert out["ids"] == [True, True, True], out


def test_was_current_actor_reconstructed(run_script):
    from test_lifecycle import last_json
    world = run_script("""
        import json, os, signal, time
        import mpiray as ray

        ray.init(num_cpus=2)

        @ray.remote(max_restarts=3)
        class A:
            def __init__(self):
                self.at_init = ray.get_runtime_context().was_current_actor_reconstructed
            def state(self):
                return self.at_init, ray.get_runtime_context().was_current_actor_reconstructed
            def pid(self):
                return os.getpid()

        @ray.remote
        def in_task():
            return ray.get_runtime_context().was_current_actor_reconstructed

        a = A.remote()
        out = {"first": ray.get(a.state.remote()), "driver": ray.get_runtime_context().was_current_actor_reconstructed,
               "task": ray.get(in_task.remote())}
        os.kill(ray.get(a.pid.remote()), signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                out["restarted"] = ray.get(a.state.remote(), timeout=10)
                break
            except ray.exceptions.RayActorError:
                time.sleep(0.2)
        print("RESULT " + json.dumps(out))
    """, timeout=90)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["first"] == [False, False] and out["driver"] is False and out["task"] is False, out
    assert out["restarted"] == [True, True], out
