"""ray.ObjectRef as a Python type (a plain CPython type of mpiray._core): identity, hashing,
pickling, weak references, its reference counting on the head, and bad input."""

import pickle
import weakref

import pytest

from conftest import wait_for
from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)


def _holders(hex_ids):
    from mpiray.util.state import list_objects
    rows = {r.object_id: r.holder_ranks for r in list_objects(limit=100000)}
    return {h: rows.get(h) for h in hex_ids}


def test_refs_unpickled_from_a_value_hold_their_objects_until_dropped(ray_cluster):
    import mpiray as ray

    @ray.remote
    def make(n):
        return [ray.put(i * 10) for i in range(n)]

    container = make.remote(200)
    inner = ray.get(container)
    ids = [r.hex() for r in inner]
    assert len(set(ids)) == 200
    # The driver (rank 0) holds each one it unpickled.
    held = _holders(ids)
    assert all(h is not None and 0 in h for h in held.values()), held
    # Without the container, the driver's own references keep the values.
    del container
    assert ray.get(inner[::37]) == [i * 10 for i in range(0, 200, 37)]
    # A second copy of the same refs (a second get of a value holding them) counts too.
    again = pickle.loads(pickle.dumps(inner[:5]))
    del inner
    assert ray.get(again) == [0, 10, 20, 30, 40]
    assert wait_for(lambda: all(h is None for h in _holders(ids[5:]).values()), timeout=20), \
        "objects no longer referenced were not freed"
    assert all(h is not None for h in _holders(ids[:5]).values())
    del again
    assert wait_for(lambda: all(h is None for h in _holders(ids[:5]).values()), timeout=20)


def test_object_ref_identity_hash_repr_and_bytes(ray_cluster):
    import mpiray as ray
    a = ray.put(1)
    b = ray.put(2)
    same = ray.ObjectRef(a.binary())
    assert type(a).__name__ == "ObjectRef" and isinstance(a, ray.ObjectRef)
    assert a == same and not (a != same) and a != b and a != a.hex() and a != None  # noqa: E711
    assert hash(a) == hash(same) and len({a, same, b}) == 2
    assert {a: "x"}[same] == "x"
    assert len(a.binary()) == 16 and len(a.hex()) == 32 and a.hex() != b.hex()
    assert repr(a) == f"ObjectRef({a.hex()})"
    # As in Ray: hex() is binary() in hex, and the bytes rebuild the ref.
    assert a.hex() == a.binary().hex() and ray.ObjectRef(bytes.fromhex(a.hex())) == a
    assert not a.is_nil()
    # A ref rebuilt from its bytes counts a reference of its own.
    del a
    assert ray.get(same) == 1
    # Ray's extras are added to the type by mpiray._api.
    assert hasattr(same, "future") and hasattr(same, "__await__")


def test_object_refs_support_weak_references_and_pickling(ray_cluster):
    import mpiray as ray
    r = ray.put("v")
    w = weakref.ref(r)
    assert w() is r
    copy = pickle.loads(pickle.dumps(r))
    assert copy == r and copy is not r
    del r
    assert w() is None
    assert ray.get(copy) == "v"


def test_object_ref_bad_input_names_the_cause(ray_cluster):
    import mpiray as ray
    with pytest.raises(TypeError, match="16 bytes"):
        ray.ObjectRef("not bytes")
    with pytest.raises(ValueError, match="16 bytes, got 3"):
        ray.ObjectRef(b"abc")
    with pytest.raises(TypeError):
        ray.ObjectRef()
    with pytest.raises(TypeError):
        class Mine(ray.ObjectRef):  # noqa: F841 (not a base type)
            pass
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.cancel("not a ref")


def test_a_ref_of_an_earlier_session_is_refused(run_script):
    world = run_script(PRELUDE + """
ray.init()
old = ray.put(5)
ray.shutdown()
ray.init()
try:
    ray.get(old)
    err = None
except ValueError as e:
    err = str(e)
new = ray.put(6)
print("RESULT " + json.dumps({"err": err, "new": ray.get(new)}))
del old
ray.shutdown()
""")
    assert world.returncode == 0, world.stderr
    out = last_json(world.stdout)
    assert out["err"] and "earlier session" in out["err"], out
    assert out["new"] == 6
