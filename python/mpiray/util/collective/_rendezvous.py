"""How members find each other: one named detached actor per job keeps the registry (the
rules are the native ``Registry``'s: incarnations, one join per rank, one world size); members
join through it with the public actor API only (no ports, no files). The same actor keeps the
declarations of ``create_collective_group`` (Ray's ``info_<group>`` actors)."""

import asyncio
import time

import mpiray as ray
from mpiray import _collective
from mpiray import exceptions as _exc

REGISTRY_NAME = "mpiray.util.collective"
REGISTRY_NAMESPACE = "_mpiray_collective"


@ray.remote(num_cpus=0, max_concurrency=1000)
class _Registry:
    def __init__(self):
        self._reg = _collective.Registry()
        self._events = {}
        self._declared = {}

    def _event(self, inc, rnd):
        ev = self._events.get((inc, rnd))
        if ev is None:
            ev = self._events[(inc, rnd)] = asyncio.Event()
        return ev

    async def _await(self, inc, rnd, timeout_s, name, world_size):
        blobs, joined = self._reg.collect(inc, rnd)
        if blobs is not None:
            self._event(inc, rnd).set()
            return blobs
        try:
            await asyncio.wait_for(self._event(inc, rnd).wait(), timeout_s)
        except asyncio.TimeoutError:
            _, joined = self._reg.collect(inc, rnd)
            raise TimeoutError(f"collective group '{name}': timed out after {timeout_s:g} s waiting for "
                               f"all {world_size} members to join; joined so far: ranks {sorted(joined)}")
        return self._reg.collect(inc, rnd)[0]

    async def join(self, name, world_size, rank, blob, timeout_s):
        inc = self._reg.join(name, world_size, rank, blob)
        return inc, await self._await(inc, 0, timeout_s, name, world_size)

    async def exchange(self, name, world_size, inc, rank, rnd, blob, timeout_s):
        self._reg.publish(inc, rank, rnd, blob)
        return await self._await(inc, rnd, timeout_s, name, world_size)

    async def leave(self, inc, rank):
        self._reg.leave(inc, rank)
        try:
            self._reg.collect(inc, 0)
        except Exception:  # every member left: forget its events too
            for key in [k for k in self._events if k[0] == inc]:
                del self._events[key]
        return True

    async def declare(self, name, info):
        if name in self._declared:
            raise ValueError(f"Trying to initialize a group twice: collective group '{name}' is already "
                             "declared (destroy it first)")
        self._declared[name] = info
        return True

    async def declaration(self, name):
        return self._declared.get(name)

    async def undeclare(self, name):
        return self._declared.pop(name, None) is not None


def _unwrap(e):
    """The remote exception behind a RayTaskError (ValueError, TimeoutError), else e."""
    cause = getattr(e, "cause", None)
    while isinstance(cause, _exc.RayTaskError) and getattr(cause, "cause", None) is not None:
        cause = cause.cause
    return cause if isinstance(cause, Exception) else e


def _call(method_name, *args, timeout=None):
    """Call the registry (created on first use); one retry if its worker died."""
    last = None
    for attempt in range(20):
        try:
            reg = _registry_handle()
            return ray.get(getattr(reg, method_name).remote(*args), timeout=timeout)
        except _exc.RayTaskError as e:
            raise _unwrap(e) from None
        except (_exc.RayActorError, ValueError) as e:  # gone, or created at the same moment
            last = e
            time.sleep(0.01 * (attempt + 1))
    raise RuntimeError(f"mpiray.util.collective: cannot reach the rendezvous actor: {last}")


def _registry_handle():
    try:
        return ray.get_actor(REGISTRY_NAME, namespace=REGISTRY_NAMESPACE)
    except ValueError:
        pass
    try:
        _Registry.options(name=REGISTRY_NAME, namespace=REGISTRY_NAMESPACE, lifetime="detached").remote()
    except Exception:
        pass  # the name was taken at the same moment (a driver learns it here)
    # Whoever won the name: a worker whose creation lost only learns it from the creation's
    # result, so ask the head which actor holds the name (it handled our creation first).
    for attempt in range(200):
        try:
            return ray.get_actor(REGISTRY_NAME, namespace=REGISTRY_NAMESPACE)
        except ValueError:
            time.sleep(0.005 * min(attempt + 1, 20))
    raise RuntimeError("mpiray.util.collective: the rendezvous actor could not be created")


class Rendezvous:
    """The three callables the native group creation calls (with the GIL)."""

    def __init__(self, name, world_size, rank, join_timeout_s):
        self.name, self.world_size, self.rank = name, world_size, rank
        self.timeout_s = join_timeout_s
        self.incarnation = None

    def join(self, blob):
        inc, blobs = _call("join", self.name, self.world_size, self.rank, bytes(blob), self.timeout_s,
                           timeout=self.timeout_s + 30)
        self.incarnation = inc
        return inc, list(blobs)

    def exchange(self, inc, rnd, blob):
        return list(_call("exchange", self.name, self.world_size, inc, self.rank, rnd, bytes(blob),
                          self.timeout_s, timeout=self.timeout_s + 30))

    def leave(self, inc=None):
        inc = self.incarnation if inc is None else inc
        if inc is None:
            return
        try:
            reg = ray.get_actor(REGISTRY_NAME, namespace=REGISTRY_NAMESPACE)
            reg.leave.remote(inc, self.rank)
        except Exception:
            pass  # the registry is gone with its worker: nothing to free


def declare(name, info):
    return _call("declare", name, info, timeout=60)


def declaration(name):
    try:
        reg = ray.get_actor(REGISTRY_NAME, namespace=REGISTRY_NAMESPACE)
    except ValueError:
        return None
    try:
        return ray.get(reg.declaration.remote(name), timeout=60)
    except _exc.RayActorError:
        return None


def undeclare(name):
    try:
        reg = ray.get_actor(REGISTRY_NAME, namespace=REGISTRY_NAMESPACE)
        ray.get(reg.undeclare.remote(name), timeout=60)
    except Exception:
        pass
