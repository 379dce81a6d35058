"""The actor that runs trials (in the workers).

One ``TrialRunner`` actor hosts one trial at a time (several in turn with ``reuse_actors``).
The trainable runs on a thread of its own. ``report()`` hands the result to the driver and,
as in Ray, returns only once the driver has processed it and decided that the trial goes on
(``window`` = 1): a stop, pause or PBT exploit takes effect exactly at the reported
iteration. The driver keeps one ``poll`` call outstanding per running trial; the arrival of
the next ``poll`` is the "continue" for the results the previous one returned. Where nothing
on the driver can act on a result the controller may pass a larger ``window``
(``MPIRAY_TUNE_RUN_AHEAD``): ``report()`` then returns while fewer than ``window`` results
are unprocessed, and results travel in batches.
"""

import os
import pickle
import shutil
import socket
import threading
import time
import traceback

import cloudpickle

from ..train._checkpoint import Checkpoint
from ..train._session import Session, use_session

_trainables = {}            # key -> trainable (one unpickling per process and experiment)
_trainables_lock = threading.Lock()
_HOST = socket.gethostname()
try:
    _IP = socket.gethostbyname(_HOST)
except OSError:
    _IP = "127.0.0.1"


class StopTrial(BaseException):
    """Raised inside a trial's thread (at its next report) when the driver stopped it."""


def _load_trainable(spec):
    key = spec["trainable_key"]
    t = _trainables.get(key)
    if t is None:
        import mpiray
        with _trainables_lock:
            t = _trainables.get(key)
            if t is None:
                t = cloudpickle.loads(mpiray.get(spec["trainable_ref"]))
                _trainables[key] = t
    return t


class _Run(Session):
    """One incarnation of one trial inside the runner."""

    def __init__(self, runner, spec):
        self.runner = runner
        self.spec = spec
        self.buf = []              # results not yet taken by the driver's poll
        self.inc = spec["incarnation"]
        self.trial_id = spec["trial_id"]
        self.trial_dir = spec["trial_dir"]
        self.stop_flag = False
        self.save_request = False
        self.finished = False
        self.error = None
        self.iteration = spec.get("start_iteration", 0)
        self.time_total = spec.get("start_time_total", 0.0)
        self.ckpt_index = spec.get("ckpt_index", 0)
        self.restore_path = spec.get("restore_path")
        self.start = time.time()
        self.last = self.start
        self.iters_since_restore = 0
        self.handed_out = self.iteration   # iteration of the last result the driver took
        self.acked = self.iteration        # ... and has processed (report() waits for it)
        self.window = max(1, int(spec.get("report_window", 1)))
        self._date_sec = -1
        self._date = ""

    # -- Session (what report/get_checkpoint/get_context see)
    def get_checkpoint(self):
        return Checkpoint(self.restore_path) if self.restore_path else None

    def context(self):
        s = self.spec
        return {"trial_name": s["trial_name"], "trial_id": self.trial_id, "trial_dir": self.trial_dir,
                "experiment_name": s["experiment_name"], "trial_resources": s.get("resources"),
                "metadata": {}}

    def report(self, metrics, checkpoint=None, checkpoint_dir_name=None):
        if self.stop_flag:
            raise StopTrial()
        result = dict(metrics)
        ckpt_path = None
        if checkpoint is not None:
            if not isinstance(checkpoint, Checkpoint):
                raise TypeError(f"report(checkpoint=...) expects a Checkpoint, got {type(checkpoint).__name__}")
            ckpt_path = self._persist(checkpoint.path, checkpoint_dir_name)
        self._push(result, ckpt_path)
        self._wait_for_driver()

    def _wait_for_driver(self):
        """Block until the driver has processed enough of our results (all of them with
        window 1: the decision on this result is made); a stop ends the trial here."""
        cond = self.runner._cond
        with cond:
            while self.acked <= self.iteration - self.window and not self.stop_flag:
                cond.wait(1.0)
        if self.stop_flag:
            raise StopTrial()

    def _persist(self, src, name=None):
        name = name or f"checkpoint_{self.ckpt_index:06d}"
        self.ckpt_index += 1
        dest = os.path.join(self.trial_dir, name)
        if os.path.abspath(src) != os.path.abspath(dest):
            shutil.copytree(src, dest, dirs_exist_ok=True)
        self.restore_path = dest
        return dest

    def _push(self, result, ckpt_path):
        now = time.time()
        self.iteration += 1
        self.iters_since_restore += 1
        this_iter = now - self.last
        self.last = now
        self.time_total += this_iter
        sec = int(now)
        if sec != self._date_sec:
            self._date_sec = sec
            self._date = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
        result.setdefault("done", False)
        result["training_iteration"] = self.iteration
        result["trial_id"] = self.trial_id
        result["date"] = self._date
        result["timestamp"] = sec
        result["time_this_iter_s"] = this_iter
        result["time_total_s"] = self.time_total
        result["pid"] = os.getpid()
        result["hostname"] = _HOST
        result["node_ip"] = _IP
        result["time_since_restore"] = now - self.start
        result["iterations_since_restore"] = self.iters_since_restore
        result["checkpoint_dir_name"] = os.path.basename(ckpt_path) if ckpt_path else None
        if ckpt_path:
            result["_ckpt"] = ckpt_path
        cond = self.runner._cond
        with cond:
            self.buf.append(result)
            cond.notify_all()

    # -- the trial's thread
    def run(self):
        try:
            with use_session(self):
                trainable = _load_trainable(self.spec)
                from .trainable import Trainable
                if isinstance(trainable, type) and issubclass(trainable, Trainable):
                    self._run_class(trainable)
                else:
                    out = trainable(self.spec["config"])
                    if isinstance(out, dict) and not self.stop_flag:
                        self._push(dict(out), None)
        except StopTrial:
            pass
        except BaseException as e:  # the trial's error goes to the driver
            self.error = _transportable(e, self.spec, traceback.format_exc())
        finally:
            self.runner._run_ended(self)

    def _run_class(self, cls):
        spec = self.spec
        inst = self.runner._instance
        reused = False
        if inst is not None and spec.get("reuse") and type(inst) is cls:
            try:
                reused = bool(inst.reset_config(dict(spec["config"])))
            except Exception:
                reused = False
            if reused:
                inst.config = dict(spec["config"])
                inst._trial_info = self.context()
        if not reused:
            inst = cls(config=dict(spec["config"]), _trial_info=self.context())
        self.runner._instance = inst
        inst._iteration = self.iteration
        if self.restore_path:
            _load_class_checkpoint(inst, self.restore_path)
        freq = spec.get("checkpoint_frequency", 0)
        at_end = spec.get("checkpoint_at_end")
        try:
            while not self.stop_flag:
                result = inst.step()
                if not isinstance(result, dict):
                    raise TypeError(f"{cls.__name__}.step() must return a dict, got {type(result).__name__}")
                result = dict(result)
                want = (freq and (self.iteration + 1) % freq == 0) or result.pop("should_checkpoint", False) \
                    or self.save_request
                ckpt = self._save_class(inst) if want else None
                self.save_request = False
                inst._iteration = self.iteration + 1
                self._push(result, ckpt)
                if result.get("done"):
                    break
                # lockstep with the driver (as Ray): the next step runs once this result has
                # been processed, so a stop or pause takes effect exactly here
                cond = self.runner._cond
                with cond:
                    while self.acked < self.iteration and not self.stop_flag:
                        cond.wait(1.0)
            if at_end and (not spec.get("_saved_last")):
                ckpt = self._save_class(inst)
                with self.runner._cond:
                    self.buf.append({"_ckpt_only": ckpt, "training_iteration": self.iteration})
                    self.runner._cond.notify_all()
        finally:
            if not spec.get("reuse"):
                try:
                    inst.cleanup()
                except Exception:
                    pass

    def _save_class(self, inst):
        name = f"checkpoint_{self.ckpt_index:06d}"
        self.ckpt_index += 1
        path = os.path.join(self.trial_dir, name)
        os.makedirs(path, exist_ok=True)
        out = inst.save_checkpoint(path)
        if isinstance(out, dict):
            with open(os.path.join(path, ".tune_state.pkl"), "wb") as f:
                cloudpickle.dump(out, f)
        self.restore_path = path
        return path


def _load_class_checkpoint(inst, path):
    state = os.path.join(path, ".tune_state.pkl")
    if os.path.exists(state):
        with open(state, "rb") as f:
            inst.load_checkpoint(pickle.load(f))
    else:
        inst.load_checkpoint(path)


def _transportable(e, spec, tb):
    header = f"{spec['trial_name']} (trial {spec['trial_id']}, pid={os.getpid()}, host={_HOST})"
    try:
        pickle.loads(cloudpickle.dumps(e))
        cause = e
    except Exception:
        cause = RuntimeError(f"{type(e).__name__}: {e}")
    return (cause, f"{header}\n{tb}")


class TrialRunner:
    """The trial actor: runs trials one after another (the controller reuses it for the next
    trial of the same resources). Calls: ``start(spec)``, ``enqueue(spec)`` (start when the
    current trial ends: no round trip to the driver in between), ``poll(incarnation,
    timeout)``, ``stop(incarnation, save, wait_s)``, ``save(incarnation)``, ``ping()``."""

    def __init__(self):
        self._cond = threading.Condition()
        self._runs = {}         # incarnation -> _Run, until the driver took its end
        self._current = None    # the _Run whose thread runs (or ran last)
        self._next = None       # a spec to start when the current run ends
        self._cancelled = set() # incarnations stopped before they started
        self._instance = None   # a class trainable kept for reuse

    def _begin(self, spec):
        """(under the lock) start ``spec``'s thread."""
        run = _Run(self, spec)
        for inc in [i for i, r in self._runs.items() if r.finished and i < run.inc - 1]:
            del self._runs[inc]     # ended long ago and the driver no longer asks for it
        self._runs[run.inc] = run
        self._current = run
        t = threading.Thread(target=run.run, name=f"trial-{spec['trial_id']}", daemon=True)
        t.start()
        self._cond.notify_all()

    def _run_ended(self, run):
        with self._cond:
            run.finished = True
            if self._current is run and self._next is not None:
                spec, self._next = self._next, None
                self._begin(spec)
            self._cond.notify_all()

    def start(self, spec):
        """Start a trial now (after the previous one here ended: it is told to stop)."""
        with self._cond:
            if spec["incarnation"] in self._cancelled:
                return os.getpid(), _HOST        # stopped before it started
            old = self._current
        if old is not None and not old.finished:
            old.stop_flag = True
            deadline = time.time() + 30
            with self._cond:
                self._cond.notify_all()
                while not old.finished and time.time() < deadline:
                    self._cond.wait(0.1)
        with self._cond:
            if spec["incarnation"] not in self._cancelled:
                self._begin(spec)
        return os.getpid(), _HOST

    def enqueue(self, spec):
        """Start ``spec`` when the current trial ends (at once when none runs)."""
        with self._cond:
            if spec["incarnation"] in self._cancelled:
                return False
            if self._current is None or self._current.finished:
                self._begin(spec)
            else:
                self._next = spec
        return True

    def poll(self, incarnation, timeout):
        """Take the results of ``incarnation`` reported so far, waiting up to ``timeout`` s for
        one. Its arrival tells the trial that the driver processed the previous batch
        (``report()`` returns). Returns (incarnation, results, finished, error, begun)."""
        deadline = time.time() + timeout
        cond = self._cond
        with cond:
            # a queued trial, or start() not run yet (calls run concurrently): wait for it,
            # and say at once when it began (the driver may queue the next trial behind it)
            waited = False
            while incarnation not in self._runs and incarnation not in self._cancelled:
                waited = True
                left = deadline - time.time()
                if left <= 0:
                    break
                cond.wait(left)
            run = self._runs.get(incarnation)
            if run is None:
                # not begun yet (poll again), or stopped before it began (finished)
                return incarnation, [], incarnation in self._cancelled, None, False
            if waited and not run.buf and not run.finished:
                return incarnation, [], False, None, True
            if run.acked < run.handed_out:
                run.acked = run.handed_out               # the previous batch was processed
                cond.notify_all()
            while not run.buf and not run.finished:
                left = deadline - time.time()
                if left <= 0:
                    break
                cond.wait(left)
            out, run.buf = run.buf, []
            for r in reversed(out):
                if "training_iteration" in r:
                    run.handed_out = r["training_iteration"]
                    break
            if run.finished:
                self._runs.pop(incarnation, None)    # the driver has all of it
            return incarnation, out, run.finished, run.error, True

    def stop(self, incarnation, save=False, wait_s=0.0, drop_next=False):
        """End ``incarnation`` at its next report (or step); a class trainable saves first
        when ``save``. A queued one never starts. ``drop_next`` also cancels what is queued
        behind it. Waits up to ``wait_s`` for its thread to end; returns whether it has."""
        with self._cond:
            if self._next is not None and (self._next["incarnation"] == incarnation or drop_next):
                self._cancelled.add(self._next["incarnation"])
                self._next = None
            run = self._runs.get(incarnation)
            if run is None:
                if self._current is None or self._current.inc < incarnation:
                    self._cancelled.add(incarnation)     # start() may still be on its way
                self._cond.notify_all()                  # a poll waiting for it returns
                return True
            run.stop_flag = True
            if save:
                run.spec["checkpoint_at_end"] = True
            self._cond.notify_all()
            deadline = time.time() + wait_s
            while not run.finished:
                left = deadline - time.time()
                if left <= 0:
                    break
                self._cond.wait(left)
            return run.finished

    def save(self, incarnation):
        """Ask a class trainable to checkpoint after its current step."""
        with self._cond:
            run = self._runs.get(incarnation)
            if run is not None:
                run.save_request = True
        return True

    def ping(self):
        return True
