"""The streaming executor: physical operators fed block by block, tasks and actor calls in
flight over the cluster, and back-pressure against a memory budget.

One loop (a driver thread, or a thread of the coordinator actor of ``streaming_split``):

1. launch work, downstream operators first, while the bytes of blocks that the execution
   holds in the object store (queued inputs, inputs of running tasks, outputs not yet taken,
   plus the expected output of each running task) stay within the budget
   (``DataContext.execution_options.resource_limits.object_store_memory``, default half the
   node's object store); when nothing is running, or nothing has finished for a while (e.g.
   tasks that wait for CPUs held by an actor pool), one more task is launched anyway so the
   execution always progresses (the object store spills what does not fit);
2. ``wait`` for any task's metadata, move finished blocks to the next operator (in order when
   ``preserve_order``);
3. hand the last operator's blocks to the consumer through a queue.

Blocks never pass through the driver: operators pass ObjectRefs, tasks read their inputs from
the store (zero-copy on the node).
"""

import collections
import logging
import os
import queue
import threading
import time

import mpiray as ray

from .metadata import RefBundle
from .progress import ProgressManager
from .transforms import TaskContext

logger = logging.getLogger("mpiray.data")

_END = object()


# Launches wait while the consumer has this many blocks (of the next task's expected output
# size, or the largest block so far) handed to it and not yet taken; they go on as it takes
# them. Running further ahead of a consumer that is behind only fills the object store: on a
# first pass every new block gets fresh shared-memory pages (allocated and zeroed by the
# kernel, 40-250 ms per 64 MiB on the 2-core VMs measured), whereas the files of blocks the
# consumer has released are recycled with their pages. A 2 GiB HDF5 read, first of a session:
# 0.57x h5py before, 0.65-1.3x after (docs/data.md).
_CONSUMER_AHEAD_BLOCKS = 2


def cluster_cpus():
    try:
        return max(1.0, float(ray.cluster_resources().get("CPU", 1.0)))
    except Exception:
        return float(os.cpu_count() or 1)


def _parse_bytes(text):
    t = text.strip().upper()
    if t.endswith("B") and len(t) > 1:
        t = t[:-1]
    mult = 1
    if t and t[-1] in "KMGT":
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[t[-1]]
        t = t[:-1]
    return int(float(t) * mult)


def store_capacity():
    """The object store capacity of a node: Ray's ``object_store_memory`` resource when the
    runtime reports it, else ``MPIRAY_OBJECT_STORE_MEMORY``, else the runtime's default (30% of
    the shared-memory file system)."""
    try:
        v = ray.cluster_resources().get("object_store_memory")
        if v:
            nodes = max(1, len(ray.nodes()))
            return int(v / nodes)
    except Exception:
        pass
    env = os.environ.get("MPIRAY_OBJECT_STORE_MEMORY")
    if env:
        try:
            return _parse_bytes(env)
        except ValueError:
            pass
    try:
        st = os.statvfs(os.environ.get("MPIRAY_SHM_DIR") or "/dev/shm")
        return int(st.f_blocks * st.f_frsize * 0.3)
    except OSError:
        return 2 << 30


def memory_budget(ctx):
    lim = ctx.execution_options.resource_limits.object_store_memory
    if lim is not None and lim != float("inf"):
        return int(lim)
    return int(store_capacity() * ctx.object_store_memory_limit_fraction)


class OpStats:
    """What stats() prints about one operator."""

    def __init__(self, name):
        self.name = name
        self.task_stats = []        # ExecStats per task
        self.block_rows = []
        self.block_bytes = []
        self.task_rows = []
        self.input_rows = 0
        self.start = None
        self.end = None
        self.extra = []             # lines for all-to-all operators


class PhysicalOp:
    """Base of the physical operators (see the module docstring)."""

    def __init__(self, name, inputs):
        self.name = name
        self.inputs = list(inputs)
        self.in_queues = [collections.deque() for _ in self.inputs]
        self.inputs_done = [False] * len(self.inputs)
        self.outputs = collections.deque()
        self.done = False
        self.stopped = False
        self.stats = OpStats(name)
        self.rows_out = 0
        self.active = 0
        self.ex = None
        self.total_rows_hint = None
        self.inputs_consumers = 1

    # --- inputs
    def add_input(self, bundle, i):
        if self.stopped:
            return
        self.in_queues[i].append(bundle)
        self.stats.input_rows += bundle.num_rows

    def input_done(self, i):
        self.inputs_done[i] = True

    def all_inputs_done(self):
        return all(self.inputs_done)

    def queued_bytes(self):
        return sum(b.size_bytes for q in self.in_queues for b in q)

    def queued_blocks(self):
        return sum(len(q) for q in self.in_queues)

    # --- work
    def can_launch(self):
        return False

    def launch(self):
        raise NotImplementedError

    def est_output_bytes(self):
        return 0

    def running_bytes(self):
        return 0

    def held_bytes(self):
        return self.queued_bytes() + self.running_bytes() + sum(b.size_bytes for b in self.outputs)

    def step(self):
        """Work that needs no task (pass-through operators); returns True if it did some."""
        return False

    def emit(self, bundle):
        if self.stopped:
            return
        self.outputs.append(bundle)
        self.rows_out += bundle.num_rows
        self.stats.block_rows.append(bundle.num_rows)
        self.stats.block_bytes.append(bundle.size_bytes)

    def stop(self):
        """No more outputs are wanted (a downstream limit was reached)."""
        self.stopped = True
        for q in self.in_queues:
            q.clear()
        self.outputs.clear()

    def finished(self):
        return self.done

    def shutdown(self):
        pass

    def progress_str(self):
        return ""


class InputDataBuffer(PhysicalOp):
    """Blocks already in the store (a materialized dataset, from_items, ...)."""

    def __init__(self, bundles, name="Input"):
        super().__init__(name, [])
        self._bundles = list(bundles)
        self.total_rows_hint = sum(b.num_rows for b in self._bundles)

    def step(self):
        if self.done:
            return False
        if self.stats.start is None:
            self.stats.start = time.perf_counter()
        for b in self._bundles:
            self.emit(b)
        self._bundles = []
        self.done = True
        self.stats.end = time.perf_counter()
        return True


class _Task:
    __slots__ = ("seq", "inputs", "in_bytes", "payload", "meta_ref", "started", "worker")

    def __init__(self, seq, inputs, payload, meta_ref, worker=None):
        self.seq = seq
        self.inputs = inputs
        self.in_bytes = sum(b.size_bytes for b in inputs)
        self.payload = payload
        self.meta_ref = meta_ref
        self.started = time.perf_counter()
        self.worker = worker


class _MapOpBase(PhysicalOp):
    """A fused map stage: over read tasks (``source``) or over input bundles."""

    def __init__(self, name, inputs, chain, source=None, remote_args=None, min_rows_per_bundle=None,
                 concurrency=None):
        super().__init__(name, inputs)
        self.chain = chain
        self.source = collections.deque(enumerate(source)) if source is not None else None
        self.remote_args = dict(remote_args or {})
        self.min_rows = min_rows_per_bundle
        self.concurrency = concurrency
        self.holder = None
        self.tasks = {}            # meta_ref -> _Task
        self.next_seq = 0
        self.next_emit = 0
        self.finished_out = {}     # seq -> [bundles]
        self.out_bytes_seen = 0
        self.tasks_seen = 0
        self.est_first = 0
        if source is not None:
            self.total_rows_hint = None
            ests = [getattr(t, "size_bytes", None) for _, t in self.source]
            known = [e for e in ests if e]
            self.est_first = int(sum(known) / len(known)) if known else 0

    def _holder(self):
        if self.holder is None:
            self.holder = [ray.put(self.chain)]
        return self.holder

    def has_input(self):
        if self.stopped:
            return False
        if self.source is not None:
            return bool(self.source)
        q = self.in_queues[0]
        if not q:
            return False
        if self.min_rows and not self.inputs_done[0]:
            return sum(b.num_rows for b in q) >= self.min_rows
        return True

    def _take_bundle(self):
        if self.source is not None:
            idx, rt = self.source.popleft()
            return idx, rt, []
        q = self.in_queues[0]
        taken = [q.popleft()]
        if self.min_rows:
            rows = taken[0].num_rows
            while q and rows < self.min_rows:
                b = q.popleft()
                taken.append(b)
                rows += b.num_rows
        return None, None, taken

    def est_output_bytes(self):
        if self.tasks_seen:
            return self.out_bytes_seen / self.tasks_seen
        if self.source is not None:
            return self.est_first
        q = self.in_queues[0]
        return q[0].size_bytes if q else 0

    def running_bytes(self):
        est = self.est_output_bytes()
        # Outputs of finished tasks that wait for earlier ones (preserve_order) count too.
        waiting = sum(b.size_bytes for bs in self.finished_out.values() for b in bs)
        return sum(t.in_bytes + est for t in self.tasks.values()) + waiting

    def _tctx(self, seq, read_task, inputs):
        if read_task is not None:
            loc = getattr(read_task, "location", "") or f"read task {seq}"
        else:
            locs = [b.meta.location for b in inputs if b.meta.location]
            loc = f"block {seq}" + (f" (from {locs[0]})" if locs else "")
        return TaskContext(seq, self.name, loc, self.ex.ctx.target_max_block_size)

    def on_task_done(self, task):
        try:
            meta = ray.get(task.meta_ref)
        except Exception as e:
            del self.tasks[task.meta_ref]
            self.active -= 1
            if self.ex.tolerate_error(self, e):
                self.finished_out[task.seq] = []
                self._release()
                return
            raise
        del self.tasks[task.meta_ref]
        self.active -= 1
        if isinstance(meta, list):
            refs = ray.get(task.payload)
            bundles = [RefBundle(r, m) for r, m in zip(refs, meta)]
            metas = meta
        else:
            bundles = [RefBundle(task.payload, meta)]
            metas = [meta]
        self.tasks_seen += 1
        out_bytes = sum(m.size_bytes for m in metas)
        self.out_bytes_seen += out_bytes
        if metas and metas[0].exec_stats is not None:
            self.stats.task_stats.append(metas[0].exec_stats)
        self.stats.task_rows.append(sum(m.num_rows for m in metas))
        self.ex.check_read_schema(self, metas)
        self.finished_out[task.seq] = bundles
        self._release()

    def _release(self):
        if self.ex.ctx.execution_options.preserve_order:
            while self.next_emit in self.finished_out:
                for b in self.finished_out.pop(self.next_emit):
                    self.emit(b)
                self.next_emit += 1
        else:
            for seq in sorted(self.finished_out):
                for b in self.finished_out.pop(seq):
                    self.emit(b)

    def _update_done(self):
        if self.done:
            return
        no_more_input = (self.source is not None and not self.source) or \
                        (self.source is None and self.all_inputs_done() and not self.in_queues[0])
        if self.stopped or (no_more_input and not self.tasks):
            self.done = True
            self.stats.end = time.perf_counter()
            self.shutdown()

    def step(self):
        self._update_done()
        return False

    def stop(self):
        super().stop()
        if self.source is not None:
            self.source.clear()
        for t in list(self.tasks.values()):
            try:
                ray.cancel(t.meta_ref)
            except Exception:
                pass
        self.tasks.clear()
        self.finished_out.clear()
        self.active = 0

    def progress_str(self):
        return ""


class TaskMapOp(_MapOpBase):
    """A map stage run as tasks."""

    def max_in_flight(self):
        if self.concurrency:
            return int(self.concurrency if not isinstance(self.concurrency, tuple) else self.concurrency[-1])
        cpus = self.remote_args.get("num_cpus", 1) or 0
        per = cpus if cpus > 0 else 0.25
        return max(1, int(self.ex.cpus / per) * 2)

    def can_launch(self):
        return self.has_input() and len(self.tasks) < self.max_in_flight()

    def launch(self):
        if self.stats.start is None:
            self.stats.start = time.perf_counter()
        idx, rt, inputs = self._take_bundle()
        seq = self.next_seq
        self.next_seq += 1
        tctx = self._tctx(seq, rt, inputs)
        from .remote import map_task
        opts = dict(self.remote_args)
        opts.setdefault("num_cpus", 1)
        payload, meta_ref = map_task.options(**opts).remote(self._holder(), tctx, rt, *[b.ref for b in inputs])
        t = _Task(seq, inputs, payload, meta_ref)
        self.tasks[meta_ref] = t
        self.active += 1
        self.ex.watch(meta_ref, self, t)

    def progress_str(self):
        return f"Tasks: {len(self.tasks)}"


class ActorPoolStrategy:
    """Run a map stage on a pool of actors: ``ActorPoolStrategy(size=n)`` or
    ``ActorPoolStrategy(min_size=a, max_size=b)`` (grows while inputs wait)."""

    def __init__(self, *, size=None, min_size=None, max_size=None, max_tasks_in_flight_per_actor=None,
                 initial_size=None):
        if size is not None:
            if size < 1:
                raise ValueError(f"size must be >= 1, got {size}")
            min_size = max_size = size
        min_size = 1 if min_size is None else min_size
        if min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {min_size}")
        if max_size is not None and max_size < min_size:
            raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")
        self.min_size = min_size
        self.max_size = max_size
        self.initial_size = initial_size or min_size
        self.max_tasks_in_flight_per_actor = max_tasks_in_flight_per_actor

    def __repr__(self):
        return f"ActorPoolStrategy(min_size={self.min_size}, max_size={self.max_size})"

    def __eq__(self, other):
        return isinstance(other, ActorPoolStrategy) and (self.min_size, self.max_size) == (other.min_size, other.max_size)


class TaskPoolStrategy:
    """Run a map stage as tasks (the default); ``size`` caps the tasks in flight."""

    def __init__(self, size=None):
        self.size = size


class ActorMapOp(_MapOpBase):
    """A map stage on a pool of actors that construct the callable classes once."""

    def __init__(self, name, inputs, chain, strategy, **kw):
        super().__init__(name, inputs, chain, **kw)
        self.strategy = strategy
        self.actors = []        # [handle, in_flight]
        self.per_actor = None

    def _max_size(self):
        m = self.strategy.max_size
        if m is None:
            cpus = self.remote_args.get("num_cpus", 1) or 1
            m = max(self.strategy.min_size, int(self.ex.cpus / cpus))
        return m

    def _add_actor(self):
        from .remote import MapWorker
        opts = {k: v for k, v in self.remote_args.items() if k in ("num_cpus", "num_gpus", "resources",
                                                                   "memory", "runtime_env", "max_concurrency",
                                                                   "scheduling_strategy")}
        opts.setdefault("num_cpus", 1)
        a = MapWorker.options(**opts).remote(self._holder())
        self.actors.append([a, 0])

    def can_launch(self):
        if not self.has_input():
            return False
        if self.per_actor is None:
            self.per_actor = self.strategy.max_tasks_in_flight_per_actor or self.ex.ctx.max_tasks_in_flight_per_actor
        if not self.actors:
            for _ in range(self.strategy.initial_size):
                self._add_actor()
        if any(n < self.per_actor for _, n in self.actors):
            # Prefer an idle actor; grow the pool when every actor is busy and inputs wait.
            if all(n > 0 for _, n in self.actors) and len(self.actors) < self._max_size():
                self._add_actor()
            return True
        if len(self.actors) < self._max_size():
            self._add_actor()
            return True
        return False

    def launch(self):
        if self.stats.start is None:
            self.stats.start = time.perf_counter()
        slot = min(self.actors, key=lambda a: a[1])
        idx, rt, inputs = self._take_bundle()
        seq = self.next_seq
        self.next_seq += 1
        tctx = self._tctx(seq, rt, inputs)
        payload, meta_ref = slot[0].process.remote(tctx, rt, *[b.ref for b in inputs])
        slot[1] += 1
        t = _Task(seq, inputs, payload, meta_ref, worker=slot)
        self.tasks[meta_ref] = t
        self.active += 1
        self.ex.watch(meta_ref, self, t)

    def on_task_done(self, task):
        task.worker[1] -= 1
        super().on_task_done(task)

    def shutdown(self):
        for a, _ in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        self.actors = []

    def progress_str(self):
        return f"Tasks: {len(self.tasks)}; Actors: {len(self.actors)}"


class LimitOp(PhysicalOp):
    """Passes the first ``limit`` rows and stops everything upstream."""

    def __init__(self, inp, limit):
        super().__init__(f"limit={limit}", [inp])
        self.limit = limit
        self.seen = 0
        self.pending = None   # (slice payload, meta ref)

    def step(self):
        did = False
        q = self.in_queues[0]
        while q and self.pending is None and self.seen < self.limit:
            if self.stats.start is None:
                self.stats.start = time.perf_counter()
            b = q.popleft()
            did = True
            if self.seen + b.num_rows <= self.limit:
                self.seen += b.num_rows
                self.emit(b)
            else:
                from .remote import slice_task
                need = self.limit - self.seen
                payload, meta_ref = slice_task.remote(b.ref, 0, need)
                self.pending = (payload, meta_ref)
                self.ex.watch(meta_ref, self, None)
                self.seen = self.limit
        if self.seen >= self.limit and not self.done and self.pending is None:
            self.ex.stop_upstream(self)
            q.clear()
            self.done = True
            self.stats.end = time.perf_counter()
            did = True
        if not self.done and self.all_inputs_done() and not q and self.pending is None:
            self.done = True
            self.stats.end = time.perf_counter()
            did = True
        return did

    def on_task_done(self, task):
        payload, meta_ref = self.pending
        self.pending = None
        self.emit(RefBundle(payload, ray.get(meta_ref)))

    def held_bytes(self):
        return super().held_bytes()


class UnionOp(PhysicalOp):
    """The inputs' blocks one input after the other (in order), or as they come."""

    def __init__(self, inputs):
        super().__init__("Union", inputs)
        self.cur = 0

    def step(self):
        did = False
        if self.stats.start is None:
            self.stats.start = time.perf_counter()
        if self.ex.ctx.execution_options.preserve_order:
            while self.cur < len(self.inputs):
                q = self.in_queues[self.cur]
                while q:
                    self.emit(q.popleft())
                    did = True
                if self.inputs_done[self.cur]:
                    self.cur += 1
                else:
                    break
        else:
            for q in self.in_queues:
                while q:
                    self.emit(q.popleft())
                    did = True
        if not self.done and self.all_inputs_done() and not any(self.in_queues):
            self.done = True
            self.stats.end = time.perf_counter()
            did = True
        return did


class AllToAllOp(PhysicalOp):
    """A barrier: collects every input block, then runs ``fn(bundles_per_input, ex)`` (which
    submits its own tasks and returns the output bundles)."""

    def __init__(self, name, inputs, fn):
        super().__init__(name, inputs)
        self.fn = fn

    def step(self):
        if self.done or not self.all_inputs_done():
            return False
        self.stats.start = time.perf_counter()
        inputs = [list(q) for q in self.in_queues]
        for q in self.in_queues:
            q.clear()
        outs = self.fn(inputs, self)
        for b in outs:
            self.emit(b)
        self.done = True
        self.stats.end = time.perf_counter()
        return True

    def held_bytes(self):
        return super().held_bytes()


class StreamingExecutor:
    """Runs a DAG of physical operators (``root`` is the last); iterate it for the root's
    output bundles in order. ``stop()`` ends it early (the consumer went away)."""

    def __init__(self, root, ctx, dataset_name="dataset", progress=True, in_thread=True):
        self.root = root
        self.ctx = ctx
        self.dataset_name = dataset_name
        self.ops = self._topo(root)
        for op in self.ops:
            op.ex = self
        self.cpus = cluster_cpus()
        self.budget = memory_budget(ctx)
        self.peak_bytes = 0
        self.waiting = {}
        self.out = queue.Queue()
        self.out_bytes = 0
        self.out_block_bytes = 0      # the largest block handed to the consumer so far
        self.consumer_behind = False  # the last dispatch held launches back for the consumer
        self._out_lock = threading.Lock()
        self._stop = threading.Event()
        self.error = None
        self.errored_blocks = 0
        self.read_schemas = {}
        self.start_time = None
        self.end_time = None
        self.last_progress = time.perf_counter()
        self.progress = ProgressManager(self, enabled=progress and ctx.enable_progress_bars)
        self.thread = None
        self.in_thread = in_thread

    @staticmethod
    def _topo(root):
        order, seen = [], set()

        def visit(op):
            if id(op) in seen:
                return
            seen.add(id(op))
            for i in op.inputs:
                visit(i)
            order.append(op)

        visit(root)
        return order

    # ---------------------------------------------------------------- accounting
    def usage(self):
        return sum(op.held_bytes() for op in self.ops) + self.out_bytes

    def watch(self, ref, op, task):
        self.waiting[ref] = (op, task)

    def tolerate_error(self, op, e):
        limit = self.ctx.max_errored_blocks
        if limit < 0 or self.errored_blocks < limit:
            self.errored_blocks += 1
            logger.warning("mpiray.data: a block of %s failed and is left out (max_errored_blocks=%s): %s",
                           op.name, limit, e)
            return True
        return False

    def check_read_schema(self, op, metas):
        """Files of one read whose schemas differ: a clear error naming both."""
        for m in metas:
            s = m.input_schema
            if s is None or not m.num_rows:
                continue
            first = self.read_schemas.get(id(op))
            if first is None:
                self.read_schemas[id(op)] = (s, m.input_files)
                continue
            if first[0] != s:
                raise ValueError(
                    f"{op.name}: files have different schemas.\n{_files(first[1])}:\n{first[0]}\n"
                    f"{_files(m.input_files)}:\n{s}\nRead them separately, or make the files agree.")

    def stop_upstream(self, op):
        for i in op.inputs:
            self._stop_tree(i)

    def _stop_tree(self, op):
        if not op.stopped:
            op.stop()
            for ref in [r for r, (o, _) in self.waiting.items() if o is op]:
                del self.waiting[ref]
        for i in op.inputs:
            self._stop_tree(i)

    # ---------------------------------------------------------------- loop
    def _route(self):
        """Move outputs of each operator to its consumer; True if anything moved."""
        moved = False
        consumers = {}
        for op in self.ops:
            for idx, i in enumerate(op.inputs):
                consumers.setdefault(id(i), []).append((op, idx))
        for op in self.ops:
            while op.outputs:
                b = op.outputs.popleft()
                moved = True
                if op is self.root:
                    with self._out_lock:
                        self.out_bytes += b.size_bytes
                    self.out_block_bytes = max(self.out_block_bytes, b.size_bytes)
                    self.out.put(b)
                else:
                    for c, idx in consumers.get(id(op), []):
                        c.add_input(b, idx)
            if op.done:
                for c, idx in consumers.get(id(op), []):
                    if not c.inputs_done[idx]:
                        c.input_done(idx)
                        moved = True
        return moved

    def _dispatch(self):
        launched = False
        # Stuck: tasks are in flight but none finished for a while and the consumer has
        # nothing to read (e.g. tasks wait for CPUs that an actor pool holds while its
        # outputs fill the budget). Then one more launch is allowed; a slow consumer is not
        # a reason (its unread blocks are what the budget is for).
        stuck = (time.perf_counter() - self.last_progress > 0.5 and self.out_bytes == 0
                 and not self.root.outputs)
        self.consumer_behind = False
        for op in reversed(self.ops):
            while op.can_launch():
                est = op.est_output_bytes()
                nothing_running = not self.waiting and self.out_bytes == 0
                if self.usage() + est > self.budget and not nothing_running and not stuck:
                    break
                if self.out_bytes > 0 and self.out_bytes >= _CONSUMER_AHEAD_BLOCKS * max(est, self.out_block_bytes):
                    self.consumer_behind = True   # see _CONSUMER_AHEAD_BLOCKS
                    break
                op.launch()
                launched = True
                stuck = False
                self.last_progress = time.perf_counter()
        return launched

    def run_once(self, timeout=0.05):
        """One round of the loop; returns False when the execution is over."""
        did = True
        while did:
            did = False
            for op in self.ops:
                if op.step():
                    did = True
            if self._route():
                did = True
            if self._dispatch():
                did = True
        self.peak_bytes = max(self.peak_bytes, self.usage())
        if self.root.done and not self.root.outputs:
            return False
        if self.waiting:
            refs = list(self.waiting)
            # Held back for the consumer: look again soon (it frees the way when it takes a block).
            ready, _ = ray.wait(refs, num_returns=1, timeout=0.002 if self.consumer_behind else timeout)
            if ready:
                rest = [r for r in refs if r not in set(ready)]
                if rest:
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready = list(ready) + list(more)
                for r in ready:
                    entry = self.waiting.pop(r, None)
                    if entry is None:
                        continue
                    op, task = entry
                    op.on_task_done(task)
                self.last_progress = time.perf_counter()
        else:
            time.sleep(0.001)
        self.progress.update()
        return True

    def _run(self):
        self.start_time = time.perf_counter()
        self.progress.start()
        try:
            while not self._stop.is_set():
                if not self.run_once():
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self.error = e
        finally:
            self.end_time = time.perf_counter()
            if self._stop.is_set() or self.error is not None:
                for op in self.ops:
                    if not op.done:
                        try:
                            op.stop()
                        except Exception:
                            pass
            self.waiting.clear()
            for op in self.ops:
                if op.stats.end is None and op.stats.start is not None:
                    op.stats.end = self.end_time
                try:
                    op.shutdown()
                except Exception:
                    pass
            self.progress.close(ok=self.error is None and not self._stop.is_set())
            self.out.put(_END)

    def start(self):
        if self.in_thread:
            self.thread = threading.Thread(target=self._run, name="mpiray-data-executor", daemon=True)
            self.thread.start()
        return self

    def __iter__(self):
        if not self.in_thread and self.thread is None:
            self.thread = threading.Thread(target=self._run, name="mpiray-data-executor", daemon=True)
            self.thread.start()
        while True:
            b = self.out.get()
            if b is _END:
                if self.error is not None:
                    raise self.error
                return
            with self._out_lock:
                self.out_bytes -= b.size_bytes
            yield b

    def stop(self):
        """End the execution early: tasks not started are cancelled, blocks dropped."""
        self._stop.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=60)
        try:
            while True:
                self.out.get_nowait()
        except queue.Empty:
            pass
        self.out_bytes = 0


def _files(files):
    if not files:
        return "(unknown files)"
    return ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
