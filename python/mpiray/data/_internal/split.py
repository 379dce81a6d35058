"""streaming_split: one execution, n consumers. A coordinator actor runs the dataset's
streaming executor and hands each output block to one split (the split with the fewest rows
so far); with ``equal=True`` it keeps enough blocks back to give every split exactly the same
number of rows in the end (slicing blocks, dropping at most n - 1 rows), as Ray does.

Each split's DataIterator asks the coordinator for its next blocks; all splits must start
each epoch (the coordinator waits for all of them, then starts a new execution)."""

import collections
import threading

import mpiray as ray

from .metadata import RefBundle


@ray.remote
class SplitCoordinator:
    def __init__(self, ds, n, equal):
        self.ds = ds
        self.n = n
        self.equal = equal
        self.cond = threading.Condition()
        self.split_epoch = [-1] * n
        self.epoch = -1
        self.queues = [collections.deque() for _ in range(n)]
        self.num_out = [0] * n
        self.buffer = collections.deque()
        self.exec_done = True
        self.error = None
        self.thread = None
        self.executor = None
        self.last_stats = ""

    # ------------------------------------------------------------------ consumers
    def start_epoch(self, i):
        with self.cond:
            target = self.split_epoch[i] + 1
            self.split_epoch[i] = target
            self.cond.notify_all()
            while min(self.split_epoch) < target:
                self.cond.wait(0.5)
            if self.epoch < target:
                # The previous epoch's execution is over for everyone (they all moved on).
                self._stop_execution()
                self.epoch = target
                self.queues = [collections.deque() for _ in range(self.n)]
                self.num_out = [0] * self.n
                self.buffer = collections.deque()
                self.exec_done = False
                self.error = None
                self.thread = threading.Thread(target=self._run, args=(target,), daemon=True,
                                               name="mpiray-data-split")
                self.thread.start()
            return target

    def get(self, epoch, i):
        """The next bundles of split ``i`` (a list), or None when its epoch is over."""
        with self.cond:
            while True:
                if epoch != self.epoch:
                    return None
                if self.queues[i]:
                    out = list(self.queues[i])
                    self.queues[i].clear()
                    self.cond.notify_all()
                    return out
                if self.error is not None:
                    raise self.error
                if self.exec_done:
                    return None
                self.cond.wait(0.2)

    def stats(self):
        return self.last_stats

    # ------------------------------------------------------------------ producer
    def _stop_execution(self):
        if self.executor is not None:
            self.executor.stop()
            self.executor = None
        if self.thread is not None and self.thread is not threading.current_thread():
            self.cond.release()
            try:
                self.thread.join(timeout=60)
            finally:
                self.cond.acquire()
        self.thread = None

    def _least(self):
        return min(range(self.n), key=lambda j: self.num_out[j])

    def _requirement(self, dist):
        m = max(dist)
        return sum(m - x for x in dist)

    def _dispatch(self, force=False):
        while self.buffer:
            b = self.buffer[0]
            j = self._least()
            if self.equal and not force:
                dist = list(self.num_out)
                dist[j] += b.num_rows
                left = sum(x.num_rows for x in self.buffer) - b.num_rows
                if left < self._requirement(dist):
                    break
            self.buffer.popleft()
            self.queues[j].append(b)
            self.num_out[j] += b.num_rows
        self.cond.notify_all()

    def _finish_equal(self):
        """Gives the buffered rows out so that every split ends with the same rows."""
        from .remote import slice_task
        total = sum(b.num_rows for b in self.buffer)
        m = max(self.num_out)
        alloc = [m - x for x in self.num_out]
        extra = (total - sum(alloc)) // self.n
        alloc = [a + extra for a in alloc]
        for j, want in enumerate(alloc):
            while want > 0 and self.buffer:
                b = self.buffer.popleft()
                if b.num_rows <= want:
                    self.queues[j].append(b)
                    self.num_out[j] += b.num_rows
                    want -= b.num_rows
                else:
                    p1, m1 = slice_task.remote(b.ref, 0, want)
                    p2, m2 = slice_task.remote(b.ref, want, b.num_rows)
                    meta1, meta2 = ray.get([m1, m2])
                    self.queues[j].append(RefBundle(p1, meta1))
                    self.num_out[j] += want
                    self.buffer.appendleft(RefBundle(p2, meta2))
                    want = 0
        self.buffer.clear()  # the remainder (< n rows) is dropped, as Ray's equal split
        self.cond.notify_all()

    def _run(self, epoch):
        from .executor import StreamingExecutor
        from .plan import optimize, to_physical
        try:
            ctx = self.ds._context
            root = to_physical(optimize(self.ds._plan), ctx)
            ex = StreamingExecutor(root, ctx, f"{self.ds._name}_split_{epoch}", progress=False)
            with self.cond:
                if self.epoch != epoch:
                    return
                self.executor = ex
            ex.start()
            for b in ex:
                with self.cond:
                    if self.epoch != epoch:
                        return
                    # Back-pressure: wait while the splits already hold plenty of blocks.
                    while sum(len(q) for q in self.queues) >= 2 * self.n and self.epoch == epoch:
                        self.cond.wait(0.2)
                    self.buffer.append(b)
                    self._dispatch()
            with self.cond:
                if self.equal:
                    self._finish_equal()
                else:
                    self._dispatch(force=True)
                self.last_stats = self.ds._format_stats(ex)
        except BaseException as e:  # noqa: BLE001 - raised to the consumers
            with self.cond:
                self.error = e
        finally:
            with self.cond:
                if self.epoch == epoch:
                    self.exec_done = True
                self.cond.notify_all()
