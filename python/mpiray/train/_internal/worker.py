"""The training worker: an actor that runs the user's training function on a thread of its
own and hands its reports to the controller in batches.

The controller keeps one ``poll`` call outstanding per worker; ``report()`` only appends to a
buffer (and copies the checkpoint's files into the run directory), so the loop never waits
for the driver. ``abort`` makes the next ``report``/``get_preemption_info`` raise
:class:`StopTraining` inside the loop.

A worker process can host several actors (mpiray places actors in long-lived worker
processes), but a framework such as torch.distributed keeps one process group per process:
``info()`` says whether another live training worker shares the process, and the controller
then places the group again.
"""

import os
import pickle
import shutil
import socket
import sys
import threading
import time
import traceback
import weakref

import cloudpickle

from .._checkpoint import Checkpoint
from .._session import Session, use_session
from .storage import checkpoint_dir_name as _default_ckpt_name

_live = weakref.WeakSet()        # training workers of this process that are not shut down
_live_lock = threading.Lock()
_HOST = socket.gethostname()
_MAX_BUFFERED = 10_000


class StopTraining(BaseException):
    """Raised inside the training loop (at its next report) when the controller stops it."""


def node_ip():
    """An address of this host that other nodes can reach (``MPIRAY_TRAIN_ADDR`` overrides)."""
    forced = os.environ.get("MPIRAY_TRAIN_ADDR")
    if forced:
        return forced
    try:
        ip = socket.gethostbyname(_HOST)
    except OSError:
        ip = "127.0.0.1"
    if ip.startswith("127."):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            pass
        finally:
            s.close()
    return ip


def _contains_tensor(x, depth=0):
    if depth > 8:
        return False
    t = sys.modules.get("torch")
    if t is not None and isinstance(x, t.Tensor):
        return True
    if isinstance(x, dict):
        return any(_contains_tensor(v, depth + 1) for v in x.values())
    if isinstance(x, (list, tuple)):
        return any(_contains_tensor(v, depth + 1) for v in x)
    return False


def transportable(e, header, tb):
    """(exception that can be unpickled in the driver, text with the remote traceback)."""
    try:
        pickle.loads(cloudpickle.dumps(e))
        cause = e
    except Exception:
        cause = RuntimeError(f"{type(e).__name__}: {e}")
    return cause, f"{header}\n{tb}"


class PreemptionInfo:
    """Ray's ``PreemptionInfo``: ``deadline_ms`` and ``preempted_node_to_ranks``."""

    def __init__(self, deadline_ms, preempted_node_to_ranks):
        self.deadline_ms = deadline_ms
        self.preempted_node_to_ranks = dict(preempted_node_to_ranks)

    @property
    def preempted_node_ids(self):
        return sorted(self.preempted_node_to_ranks)

    @property
    def preempted_ranks(self):
        return sorted({r for rs in self.preempted_node_to_ranks.values() for r in rs})

    def __eq__(self, other):
        return isinstance(other, PreemptionInfo) and (self.deadline_ms, self.preempted_node_to_ranks) == (
            other.deadline_ms, other.preempted_node_to_ranks)

    def __repr__(self):
        return (f"PreemptionInfo(deadline_ms={self.deadline_ms}, "
                f"preempted_node_to_ranks={self.preempted_node_to_ranks})")


class _WorkerSession(Session):
    """What ``train.report``/``get_checkpoint``/``get_context``/``get_dataset_shard`` see in
    a training worker."""

    def __init__(self, worker, spec):
        self.worker = worker
        self.spec = spec
        self.ctx = spec["context"]
        self.run_path = spec["run_path"]
        self.base = spec["report_base"]
        self.count = 0
        self.checkpoint_path = spec.get("checkpoint")
        self.datasets = spec.get("datasets") or {}
        self.last = time.time()
        self._sync_seq = 0
        self._sync = None

    # -- Session
    def get_checkpoint(self):
        return Checkpoint(self.checkpoint_path) if self.checkpoint_path else None

    def context(self):
        return self.ctx

    def report(self, metrics, checkpoint=None, checkpoint_dir_name=None, checkpoint_upload_mode=None,
               delete_local_checkpoint_after_upload=None, checkpoint_upload_fn=None, validation=False, **_):
        w = self.worker
        if w.stop_flag:
            raise StopTraining()
        if _contains_tensor(metrics):
            raise ValueError("Passing objects containing Torch tensors as metrics is not supported as it will "
                             "throw an exception on deserialization. You can either convert the tensors to "
                             "Python objects (ex: `.numpy()`, `.item()`, etc.) or save tensors as part of the "
                             "checkpoint files instead.")
        index = self.base + self.count
        self.count += 1
        name = None
        if checkpoint is not None:
            if not isinstance(checkpoint, Checkpoint):
                raise TypeError(f"report(checkpoint=...) expects a mpiray.train.Checkpoint, got "
                                f"{type(checkpoint).__name__}")
            if not os.path.isdir(checkpoint.path):
                raise FileNotFoundError(f"report(checkpoint=...): the checkpoint directory {checkpoint.path} "
                                        "does not exist")
            name = checkpoint_dir_name or _default_ckpt_name(index)
            dest = os.path.join(self.run_path, name)
            if os.path.abspath(checkpoint.path) != os.path.abspath(dest):
                shutil.copytree(checkpoint.path, dest, dirs_exist_ok=True)
            if delete_local_checkpoint_after_upload and os.path.abspath(checkpoint.path) != os.path.abspath(dest):
                shutil.rmtree(checkpoint.path, ignore_errors=True)
        now = time.time()
        item = {"index": index, "metrics": dict(metrics), "checkpoint": name, "time": now,
                "time_this_iter_s": now - self.last}
        self.last = now
        w._push(item)
        if w.stop_flag:
            raise StopTraining()

    # -- Train extras
    def get_dataset_shard(self, name):
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise KeyError(f"get_dataset_shard({name!r}): no dataset of that name was given to the trainer "
                           f"(datasets: {known})")
        return self.datasets[name]

    def get_preemption_info(self):
        """Rank 0's view of an imminent preemption (the Slurm walltime warning), agreed by all
        ranks: a barrier across the workers, as Ray's."""
        w = self.worker
        if self.ctx["world_size"] == 1:
            return w.preemption
        import mpiray
        if self._sync is None:
            self._sync = mpiray.get_actor(self.spec["sync_actor"])
        self._sync_seq += 1
        value = w.preemption if self.ctx["world_rank"] == 0 else None
        while True:
            if w.stop_flag:
                raise StopTraining()
            done, out = mpiray.get(self._sync.broadcast_from_rank_zero.remote(
                self.ctx["world_rank"], self.ctx["world_size"], self._sync_seq, value, 1.0))
            if done:
                return out

    def get_all_reported_checkpoints(self):
        return list(self.spec.get("reported_checkpoints") or [])


class SyncActor:
    """A barrier that hands every rank rank 0's value (``get_preemption_info``)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._seq = {}

    def broadcast_from_rank_zero(self, rank, world_size, seq, value, timeout):
        with self._cond:
            st = self._seq.setdefault(seq, {"ranks": set(), "value": None, "taken": set()})
            st["ranks"].add(rank)
            if rank == 0:
                st["value"] = value
            self._cond.notify_all()
            deadline = time.time() + timeout
            while len(st["ranks"]) < world_size:
                left = deadline - time.time()
                if left <= 0:
                    return False, None
                self._cond.wait(left)
            st["taken"].add(rank)
            out = st["value"]
            if len(st["taken"]) >= world_size:
                self._seq.pop(seq, None)
            return True, out


class TrainWorker:
    """One training worker (an actor). Calls: ``info``, ``configure``, ``execute``, ``start``,
    ``poll``, ``set_preemption``, ``abort``, ``shutdown``."""

    def __init__(self):
        with _live_lock:
            self._others = sum(1 for w in _live if w is not self and w.active)
            _live.add(self)
        self.active = True
        self._cond = threading.Condition()
        self._buf = []
        self.stop_flag = False
        self.finished = False
        self.started = False
        self.error = None
        self.return_value = None
        self.preemption = None
        self._thread = None
        self.ctx = {}

    def info(self):
        import mpiray
        busy_pg = False
        t = sys.modules.get("torch")
        if t is not None:
            try:
                busy_pg = t.distributed.is_available() and t.distributed.is_initialized()
            except Exception:
                busy_pg = False
        try:
            gpu_ids = [str(g) for g in mpiray.get_gpu_ids()]
        except Exception:
            gpu_ids = []
        return {"pid": os.getpid(), "host": _HOST, "ip": node_ip(),
                "node_id": mpiray.get_runtime_context().get_node_id(), "gpu_ids": gpu_ids,
                "shared": self._others > 0 or busy_pg}

    def configure(self, ctx, env):
        """Ranks and the environment (``RANK``, ``LOCAL_RANK``, ``CUDA_VISIBLE_DEVICES``...)."""
        self.ctx = dict(ctx)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        t = sys.modules.get("torch")
        if t is not None and ctx.get("num_threads"):
            t.set_num_threads(ctx["num_threads"])  # torch read OMP_NUM_THREADS when it was imported
        return True

    def execute(self, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` here (backend set-up) and return its value."""
        return fn(*args, **kwargs)

    def start(self, spec):
        with self._cond:
            self._buf = []
            self.stop_flag = False
            self.finished = False
            self.started = True
            self.error = None
        self._session = _WorkerSession(self, spec)
        self._thread = threading.Thread(target=self._run, args=(spec,), daemon=True,
                                        name=f"mpiray-train-rank{spec['context']['world_rank']}")
        self._thread.start()
        return True

    def _run(self, spec):
        rank = spec["context"]["world_rank"]
        try:
            import mpiray
            fn = cloudpickle.loads(mpiray.get(spec["train_fn"]))
            with use_session(self._session):
                out = fn()
            with self._cond:
                self.return_value = out if rank == 0 else None
        except StopTraining:
            pass
        except BaseException as e:  # the loop's error goes to the controller
            header = (f"training worker rank {rank} (pid={os.getpid()}, host={_HOST}) raised "
                      f"{type(e).__name__}:")
            self.error = transportable(e, header, traceback.format_exc())
        finally:
            with self._cond:
                self.finished = True
                self._cond.notify_all()

    def _push(self, item):
        with self._cond:
            while len(self._buf) >= _MAX_BUFFERED and not self.stop_flag:
                self._cond.wait(0.1)
            self._buf.append(item)
            self._cond.notify_all()

    def poll(self, timeout):
        """Wait up to ``timeout`` s for reports; returns (reports, finished, error, return_value)."""
        deadline = time.time() + timeout
        with self._cond:
            while not self._buf and not self.finished:
                left = deadline - time.time()
                if left <= 0:
                    break
                self._cond.wait(left)
            out, self._buf = self._buf, []
            self._cond.notify_all()
            fin = self.finished
            return out, fin, self.error if fin else None, self.return_value if fin else None

    def set_preemption(self, info):
        self.preemption = info
        return True

    def abort(self, grace_s):
        """Stop the loop (at its next report) and wait up to ``grace_s`` for its thread;
        returns whether it ended."""
        with self._cond:
            self.stop_flag = True
            self._cond.notify_all()
        t = self._thread
        if t is not None:
            t.join(grace_s)
            return not t.is_alive()
        return True

    def shutdown(self, fns=()):
        """Run the backend's shutdown functions (e.g. destroy the process group) and give the
        process back; returns whether the training thread has ended. While the thread still
        runs (blocked in a collective whose peer is gone) nothing is torn down under it: the
        caller retries after the peers' groups went away."""
        t = self._thread
        ended = t is None or not t.is_alive()
        if ended:
            for fn in fns:
                try:
                    fn()
                except Exception:
                    pass
            self.active = False
            with _live_lock:
                _live.discard(self)
        return ended

    def hard_exit(self):
        """The loop does not stop (stuck in native code): end this worker process, so that
        nothing of the run stays behind in it. The runtime replaces local workers."""
        sys.stderr.write(f"mpiray.train: training thread of pid {os.getpid()} does not stop; "
                         "ending its worker process\n")
        sys.stderr.flush()
        os._exit(1)
