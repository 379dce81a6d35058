"""``ActorPool``: schedule work over a fixed set of actors (Ray's ``ray.util.ActorPool``).

    pool = ActorPool([Worker.remote(), Worker.remote()])
    list(pool.map(lambda actor, v: actor.double.remote(v), [1, 2, 3]))   # [2, 4, 6]

An actor is busy from the moment work is submitted to it until its result has been taken with
``get_next``/``get_next_unordered`` (as in Ray); work submitted while every actor is busy waits
in the pool and goes to the next actor that comes back.
"""

from .. import _api
from .._core import ObjectRef

__all__ = ["ActorPool"]

_TIMEOUT_MSG = "Timed out waiting for result"


def _refs_of(future):
    """The ObjectRefs of what ``fn(actor, value)`` returned (one ref, or a list of refs for
    a method with several returns)."""
    if isinstance(future, ObjectRef):
        return [future]
    if isinstance(future, (list, tuple)) and future and all(isinstance(r, ObjectRef)
                                                            for r in future):
        return list(future)
    raise TypeError("the function given to ActorPool must return the ObjectRef of an actor "
                    "call (fn(actor, value) -> actor.method.remote(value)), got "
                    f"{type(future).__name__}")


class _Pending:
    """One submitted piece of work: its position in submission order, the actor running it,
    and what fn returned."""

    __slots__ = ("index", "actor", "future", "refs")

    def __init__(self, index, actor, future):
        self.index = index
        self.actor = actor
        self.future = future
        self.refs = _refs_of(future)


class ActorPool:
    """Operate on a fixed pool of actors.

    Args:
        actors: the actor handles to use (the pool does not own them: they are not killed when
            the pool goes away).
    """

    def __init__(self, actors):
        self._idle = list(actors)
        self._running = {}        # submission index -> _Pending, not yet returned to the caller
        self._pending_submits = []  # (fn, value) submitted while no actor was idle (Ray's name)
        self._next_index = 0      # index of the next submission
        self._next_return = 0     # index get_next() returns next

    # ------------------------------------------------------------------ mapping

    def map(self, fn, values):
        """Apply ``fn(actor, value)`` to every value, in parallel over the actors. Returns an
        iterator over the results in the order of ``values``; iterate it to the end to make
        the whole computation finish. Results of earlier submissions not yet taken are
        discarded first (as in Ray)."""
        self._discard_pending()
        for v in values:
            self.submit(fn, v)

        def results():
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(self, fn, values):
        """Like ``map``, but results come in the order they finish."""
        self._discard_pending()
        for v in values:
            self.submit(fn, v)

        def results():
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    def _discard_pending(self):
        """Drop the results of earlier submissions: their actors are idle again at once (new
        calls queue behind the old ones on the actor), queued work never starts."""
        self._pending_submits.clear()
        for pending in list(self._running.values()):
            self._finish(pending)

    # ------------------------------------------------------------------ submitting

    def submit(self, fn, value):
        """Run ``fn(actor, value)`` on an idle actor (``fn`` must return the ObjectRef of an
        actor call), or queue it until an actor is free. Take the result with ``get_next``
        or ``get_next_unordered``."""
        if self._idle:
            actor = self._idle.pop()
            try:
                pending = _Pending(self._next_index, actor, fn(actor, value))
            except BaseException:
                self._idle.append(actor)
                raise
            self._running[self._next_index] = pending
            self._next_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self):
        """Whether any submitted result has not been returned yet."""
        return bool(self._running) or bool(self._pending_submits)

    # ------------------------------------------------------------------ results

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The next result in submission order, waiting up to ``timeout`` seconds (``None``:
        no limit). Raises ``TimeoutError`` when it is not ready in time; with
        ``ignore_if_timedout=True`` that task is dropped first (its actor returns to the pool
        and the next call moves on to the following result). Raises the task's exception if it
        failed, and ``StopIteration`` when nothing is pending."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        pending = self._running.get(self._next_return)
        if pending is None:  # taken out of order by get_next_unordered()
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        if timeout is not None:
            ready, _ = _api.wait(pending.refs, num_returns=len(pending.refs), timeout=timeout)
            if len(ready) < len(pending.refs):
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MSG)
                self._finish(pending)
                raise TimeoutError(f"{_TIMEOUT_MSG}. The task {pending.future} has been ignored.")
        self._finish(pending)
        return _api.get(pending.future)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """Any finished result (the first one to finish), waiting up to ``timeout`` seconds.
        Raises ``TimeoutError`` when none finishes in time; with ``ignore_if_timedout=True``
        the oldest pending task is dropped and ``None`` returned instead (as Ray). Raises the task's exception if it failed, and
        ``StopIteration`` when nothing is pending."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        refs = {}
        for p in self._running.values():
            for r in p.refs:
                refs[r] = p
        ready, _ = _api.wait(list(refs), num_returns=1, timeout=timeout)
        if not ready:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
            if self._running:
                self._finish(self._running[min(self._running)])
            return None
        pending = refs[ready[0]]
        if len(pending.refs) > 1:  # a multi-return call: all of its refs
            _api.wait(pending.refs, num_returns=len(pending.refs))
        self._finish(pending)
        return _api.get(pending.future)

    def _finish(self, pending):
        """Forget ``pending`` and give its actor back (which starts queued work)."""
        del self._running[pending.index]
        self._next_return = max(self._next_return, pending.index + 1)
        self._return_actor(pending.actor)

    def _return_actor(self, actor):
        self._idle.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.pop(0))

    # ------------------------------------------------------------------ membership

    def has_free(self):
        """Whether an actor is idle and no submitted work is waiting for one."""
        return bool(self._idle) and not self._pending_submits

    def pop_idle(self):
        """Remove an idle actor from the pool and return it (``None`` if none is free)."""
        if self.has_free():
            return self._idle.pop()
        return None

    def push(self, actor):
        """Add an actor to the pool as idle (it takes queued work at once)."""
        busy = [p.actor for p in self._running.values()]
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
