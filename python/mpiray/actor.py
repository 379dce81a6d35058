"""Ray's ``ray.actor`` module: actor classes and handles, and ``exit_actor()``."""

import threading

from . import _core
from ._api import ActorClass, ActorHandle, ActorID, ActorMethod, method

__all__ = ["exit_actor", "ActorClass", "ActorHandle", "ActorMethod", "ActorID", "method",
           "ActorClassInheritanceException"]


class ActorClassInheritanceException(TypeError):
    """Raised when a class inherits from an actor class (a class decorated with
    ``@ray.remote``): inherit from the plain class and decorate the subclass instead."""


# Set in the event-loop thread of an async actor (its coroutines run there, outside the
# runtime's actor threads): exit_actor() is allowed there.
_actor_loop_thread = threading.local()


class ActorExit(SystemExit):
    """Raised by ``exit_actor()`` to end the actor. A ``SystemExit`` (as in Ray), so that
    ``except Exception`` in the actor's code does not swallow it."""

    def __init__(self, message="exit_actor() was called"):
        super().__init__(0)
        self.message = message

    def __str__(self):
        return self.message


def exit_actor():
    """End the calling actor on purpose (call it inside an actor method).

    The method stops here; the actor is not restarted (whatever its ``max_restarts``), its
    name is released, its resources are given back, and the method's own result and every
    later call raise ``ActorDiedError``. ``atexit`` handlers do not run: the worker process
    lives on, hosting other actors and tasks."""
    if _core.context().get("actor_id") is None and not getattr(_actor_loop_thread, "active", False):
        raise TypeError("exit_actor API is called on a non-actor worker (the driver or a "
                        "task). Use ray.kill(actor) to end an actor from outside.")
    raise ActorExit()
