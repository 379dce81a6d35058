"""Exceptions with Ray's names (``ray.exceptions``)."""

import pickle

from . import _core  # the extension module (found through mpiray.__path__)


class RayError(Exception):
    """Base of every mpiray error."""


class RaySystemError(RayError):
    """The runtime itself failed (shutting down, unreachable head, ...)."""


class RayTaskError(RayError):
    """A task or actor method raised. ``cause`` is the original exception (when it could be
    transported) and ``traceback_str`` the remote traceback, with where it ran."""

    def __init__(self, function_name="", traceback_str="", cause=None):
        super().__init__(traceback_str)
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause

    def __str__(self):
        return self.traceback_str

    def as_instanceof_cause(self):
        """An exception that is both a RayTaskError and an instance of the cause's type, so
        ``except ValueError`` catches a remote ValueError (as in Ray)."""
        cause = self.cause
        # A task that re-raised another task's error: the original exception is the cause.
        while isinstance(cause, RayTaskError) and cause.cause is not None:
            cause = cause.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self
        cause_cls = type(cause)
        if issubclass(RayTaskError, cause_cls) or isinstance(cause, RayTaskError):
            return self
        name = f"RayTaskError({cause_cls.__name__})"
        try:
            cls = type(name, (RayTaskError, cause_cls), {
                "__init__": lambda s, *a, **k: None,
                "__str__": RayTaskError.__str__,
                "__reduce__": lambda s: (_rebuild_task_error,
                                         (s.function_name, s.traceback_str, s.cause)),
            })
            err = cls.__new__(cls)
        except TypeError:
            return self
        err.args = getattr(cause, "args", ())
        err.function_name = self.function_name
        err.traceback_str = self.traceback_str
        err.cause = cause
        try:
            err.__dict__.update({k: v for k, v in vars(cause).items() if k not in err.__dict__})
        except TypeError:
            pass
        return err


def _rebuild_task_error(function_name, traceback_str, cause):
    return RayTaskError(function_name, traceback_str, cause).as_instanceof_cause()


def _raise_stored_error(message, detail):
    """Unpickling a return slot that holds a task's error (_worker_hooks._StoredError: a
    generator that raised after yielding some of its values) raises that error, as Ray's
    get does for such a slot."""
    cause = None
    if detail:
        try:
            cause = pickle.loads(detail)
        except Exception:
            cause = None
    raise RayTaskError("", message, cause).as_instanceof_cause()


class RayActorError(RayError):
    """An actor method could not run because the actor is dead."""


class ActorDiedError(RayActorError):
    """The actor is dead: killed, its constructor raised, or its worker died."""


class ActorUnavailableError(RayActorError):
    """The actor cannot be reached right now."""


class WorkerCrashedError(RayError):
    """The worker running the task died and the retries are used up."""


class ObjectLostError(RayError):
    """The object is gone (freed, or every copy was on a node that died)."""


class ObjectStoreFullError(RayError):
    """The node's object store cannot hold the object."""


class GetTimeoutError(RayError, TimeoutError):
    """``get`` or ``wait`` did not finish within the timeout."""


class TaskCancelledError(RayError):
    """The task was cancelled."""


class InfeasibleError(RayError, ValueError):
    """No node can ever satisfy the task's resource request."""


# Ray's other public exception names, in Ray's hierarchy. mpiray raises the ones above; these
# exist so that code catching them (or tests naming them) works unchanged.

class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died."""


class ObjectReconstructionFailedError(ObjectLostError):
    """The object could not be rebuilt from its lineage."""


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectLostError):
    """Rebuilding the object ran out of retries."""


class ObjectReconstructionFailedLineageEvictedError(ObjectLostError):
    """The lineage needed to rebuild the object was evicted."""


class ObjectFetchTimedOutError(ObjectLostError):
    """Fetching the object from another node timed out."""


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was deleted while still referenced."""


class NodeDiedError(RayError):
    """The node the work was on died."""


class TaskUnschedulableError(RayError):
    """The task cannot be scheduled (e.g. its node affinity target died)."""


class ActorUnschedulableError(RayError):
    """The actor cannot be scheduled."""


class OutOfMemoryError(RayError):
    """The node ran out of memory."""


class OutOfDiskError(RayError):
    """The node ran out of disk space."""


class RuntimeEnvSetupError(RayError):
    """A runtime_env could not be set up."""


class TaskPlacementGroupRemoved(RayError):
    """The task's placement group was removed."""


class ActorPlacementGroupRemoved(RayError):
    """The actor's placement group was removed."""


class PendingCallsLimitExceeded(RayError):
    """The actor has too many pending calls (max_pending_calls)."""


class LocalRayletDiedError(RayError):
    """The local node manager died."""


class AsyncioActorExit(RayError):
    """An async actor exited."""


class CrossLanguageError(RayError):
    """An error from another language's task."""


class ObjectRefStreamEndOfStreamError(RayError):
    """A streaming generator has no more items."""


class PlasmaObjectNotAvailable(Exception):
    """The object is not in the local object store."""


class UnserializableException(RayError):
    """An exception that could not be serialized (its string form is kept)."""


# The runtime's status codes (mpiray._core.StatusCode, from core/include/mpiray/core/status.h)
# -> exception classes; made at the first error (the binding is loaded by then).
_by_code = None


def _classes():
    global _by_code
    if _by_code is None:
        c = _core.StatusCode
        _by_code = {
            int(c.Timeout): GetTimeoutError,
            int(c.ObjectStoreFull): ObjectStoreFullError,
            int(c.ObjectLost): ObjectLostError,
            int(c.TaskCancelled): TaskCancelledError,
            int(c.ActorDied): ActorDiedError,
            int(c.ActorUnavailable): ActorUnavailableError,
            int(c.WorkerCrashed): WorkerCrashedError,
            int(c.Infeasible): InfeasibleError,
            int(c.InvalidArgument): ValueError,
            int(c.AlreadyExists): ValueError,
            int(c.TaskError): RayTaskError,
        }
    return _by_code


def _from_error(code, message, extra=b""):
    """The exception for a runtime error (called by the binding)."""
    cls = _classes().get(code, RaySystemError)
    if cls is RayTaskError:  # a task raised
        cause = None
        if extra:
            try:
                cause = pickle.loads(extra)
            except Exception:  # the exception type is not importable here
                cause = None
        return RayTaskError("", message, cause).as_instanceof_cause()
    if extra == _ARGUMENT_ERROR:  # a system error come through an argument: as Ray,
        # a RayTaskError that is also the system error's type
        return RayTaskError("", message, cls(message)).as_instanceof_cause()
    return cls(message)


_ARGUMENT_ERROR = b"mpiray:argument-error"  # (core: detail::kArgumentErrorMark)


__all__ = [
    "RayError", "RaySystemError", "RayTaskError", "RayActorError", "ActorDiedError",
    "ActorUnavailableError", "WorkerCrashedError", "ObjectLostError", "ObjectStoreFullError",
    "GetTimeoutError", "TaskCancelledError", "InfeasibleError", "ObjectFreedError",
    "OwnerDiedError", "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectReconstructionFailedLineageEvictedError", "ObjectFetchTimedOutError",
    "ReferenceCountingAssertionError", "NodeDiedError", "TaskUnschedulableError",
    "ActorUnschedulableError", "OutOfMemoryError", "OutOfDiskError", "RuntimeEnvSetupError",
    "TaskPlacementGroupRemoved", "ActorPlacementGroupRemoved", "PendingCallsLimitExceeded",
    "LocalRayletDiedError", "AsyncioActorExit", "CrossLanguageError",
    "ObjectRefStreamEndOfStreamError", "PlasmaObjectNotAvailable", "UnserializableException",
]
