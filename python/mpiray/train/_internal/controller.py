"""The training controller: runs in the driver (the thread that called ``fit()``).

One *attempt* is a worker group (a placement group and one actor per worker) running the
training function. The controller commits report *i* once every worker has made it (rank 0's
metrics, the checkpoint the workers wrote into ``checkpoint_<i>``), keeps the checkpoints the
CheckpointConfig asks for, and writes ``progress.csv``/``result.json``. When the group fails
(a worker raised, died, or its node went away) it is torn down and started again from the
latest checkpoint while ``FailureConfig(max_failures)`` allows. An elastic run
(``ScalingConfig(num_workers=(min, max))``) starts with what is free, keeps one pending *probe*
actor per missing worker (pending actors are what the Slurm autoscaler answers with worker
jobs), and restarts bigger when probes get placed; after a node is lost it restarts with what
is left. On the walltime signal the loops see ``get_preemption_info()``, the controller waits a
short grace for a last checkpoint, and the process ends; the snapshot in the run directory
lets the requeued job resume.
"""

import logging
import os
import socket
import sys
import threading
import time
from collections import deque

import cloudpickle

import mpiray

from .._exceptions import ControllerError, WorkerGroupError
from .checkpoint_manager import CheckpointManager
from .storage import RunStorage
from .worker import PreemptionInfo, TrainWorker, node_ip
from .worker_group import WorkerGroup

logger = logging.getLogger("mpiray.train")

_POLL_TIMEOUT = 2.0
_HOST = socket.gethostname()

# walltime: one process-wide checkpoint callback serves every running controller
_active = set()
_active_lock = threading.Lock()
_hook_registered = False


def _walltime_hook():
    with _active_lock:
        ctrls = list(_active)
    for c in ctrls:
        c.on_walltime_signal()


def _register_walltime_hook():
    global _hook_registered
    with _active_lock:
        if not _hook_registered:
            mpiray.register_checkpoint_callback(_walltime_hook)
            _hook_registered = True


def _setup_logging(level):
    lg = logging.getLogger("mpiray.train")
    lg.setLevel(level)
    if not lg.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("(mpiray.train) %(levelname)s %(message)s"))
        lg.addHandler(h)
        lg.propagate = False


class _Probe:
    """A pending actor asking for one more worker's resources (elastic runs)."""

    def ready(self):
        return True


class _Outcome:
    def __init__(self, kind, errors=None, return_value=None, note=""):
        self.kind = kind                  # "finished" | "failed" | "resize" | "preempted"
        self.errors = errors or {}        # rank -> (exception, traceback text)
        self.return_value = return_value
        self.note = note


class TrainController:
    def __init__(self, *, train_fn, train_loop_config, scaling_config, run_config, backend_config,
                 datasets, dataset_config, run_context, trainer_state=None, tune_info=None):
        self.train_fn = train_fn
        self.train_loop_config = train_loop_config
        self.sc = scaling_config
        self.rc = run_config
        self.backend_config = backend_config
        self.backend = backend_config.backend_cls()
        self.datasets = datasets or {}
        self.dataset_config = dataset_config
        self.run_context = run_context
        self.trainer_state = trainer_state
        self.tune_info = tune_info or {}
        self.callbacks = list(run_config.callbacks or [])
        self.run_id = f"{os.getpid()}-{int(time.time() * 1000) % 10**9}-{id(self) % 10**6}"
        self.generation = 0
        self.group = None
        self.storage = None
        self.manager = None
        self.restarts = []                # [{reason, detected_at, resumed_after_s, num_workers}]
        self._pending_restart = None
        self._walltime = threading.Event()
        self._walltime_done = threading.Event()
        self._commit_after_walltime = threading.Event()
        self._lock = threading.Lock()
        self._probes = []
        self._checkpoints_committed = 0
        self._start_time = time.time()
        self._logger_trial = None

    # ================================================================== public
    def run(self):
        _setup_logging(self.rc.logging_config.log_level)
        if not mpiray.is_initialized():
            mpiray.init()
        self.storage = RunStorage(self.rc.storage_path, self.rc.name)
        self.manager = CheckpointManager(self.storage, self.rc.checkpoint_config)
        if self.manager.resumed:
            ck = self.manager.latest_checkpoint()
            logger.info("resuming run %s from %s", self.storage.path, ck.path if ck else "the start (no checkpoint)")
        self.storage.clear_error()
        if self.trainer_state is not None:
            try:
                with open(os.path.join(self.storage.path, "trainer.pkl"), "wb") as f:
                    cloudpickle.dump(self.trainer_state, f)
            except Exception as e:  # an unpicklable argument only costs TorchTrainer.restore
                logger.debug("trainer.pkl not written: %s", e)
        self._start_loggers()
        train_fn_ref = mpiray.put(cloudpickle.dumps(self.train_fn))
        with _active_lock:
            _active.add(self)
        _register_walltime_hook()
        failures = 0
        return_value = None
        error = None
        try:
            if self.sc.num_workers == 0:
                return_value = self._run_local(train_fn_ref)
            else:
                while True:
                    outcome = self._attempt(train_fn_ref)
                    if outcome.kind == "finished":
                        return_value = outcome.return_value
                        break
                    if outcome.kind == "preempted":
                        # the process ends after the walltime callback returns; if the signal
                        # came without ending the process, report what was saved
                        return_value = None
                        break
                    if outcome.kind == "resize":
                        self._pending_restart = {"reason": outcome.note, "detected_at": time.time()}
                        continue
                    # failed
                    self._notify_exception(outcome.errors)
                    failures += 1
                    mf = self.rc.failure_config.max_failures
                    if mf != -1 and failures > mf:
                        error = self._group_error(outcome.errors, failures, mf)
                        break
                    ck = self.manager.latest_checkpoint()
                    logger.warning("worker group failed (%s); restarting from %s (failure %d of %s)",
                                   _summary(outcome.errors), ck.path if ck else "the start", failures,
                                   "unlimited" if mf == -1 else mf)
                    self._pending_restart = {"reason": _summary(outcome.errors), "detected_at": time.time()}
        except BaseException as e:
            if self.group is not None:
                self._teardown()
            self._kill_probes()
            if not isinstance(e, Exception):
                raise  # KeyboardInterrupt, SystemExit, a Tune trial being stopped
            if not isinstance(e, (ControllerError, WorkerGroupError)):
                e = ControllerError(e)
            error = e
        finally:
            with _active_lock:
                _active.discard(self)
            self._kill_probes()
            self._end_loggers(error is not None)
            self.storage.flush()
        if error is not None:
            self.storage.write_error(str(error))
        result = self.manager.build_result(error=error, return_value=return_value)
        self.storage.close()
        return result

    # ================================================================== attempts
    def _attempt(self, train_fn_ref):
        n = self._choose_size()
        self.generation += 1
        group = WorkerGroup(n, self.sc._resources_per_worker_not_none, self.sc.placement_strategy, self.run_id,
                            self.generation, runtime_env=self.rc.worker_runtime_env)
        self.group = group
        try:
            self._place(group)
            group.start_workers()
            self._configure(group)
            self.manager.rewind_to_latest()
            self.storage.remove_checkpoint_dirs(self.manager.committed_dir_names())
            self.backend.on_start(group, self.backend_config)
            self.backend.on_training_start(group, self.backend_config)
            shards = self._shard_datasets(n)
            ck = self.manager.latest_checkpoint()
            sync_name = group.create_sync_actor() if n > 1 else None
            specs = []
            for rank, ctx in enumerate(self._contexts):
                specs.append({"context": ctx, "run_path": self.storage.path, "report_base": self.manager.num_reports,
                              "checkpoint": ck.path if ck else None, "train_fn": train_fn_ref,
                              "datasets": shards[rank], "sync_actor": sync_name})
            mpiray.get([a.start.remote(s) for a, s in zip(group.actors, specs)])
            if self._walltime.is_set():
                self._send_preemption()
            outcome = self._watch(group)
        except _GroupDied as e:
            outcome = _Outcome("failed", e.errors)
        except Exception as e:
            if _is_actor_death(e):
                outcome = _Outcome("failed", {-1: (e, f"a training worker died while the group started: {e}")})
            else:
                self._teardown()
                raise
        self._teardown(alive=outcome.note_alive if hasattr(outcome, "note_alive") else None)
        return outcome

    def _choose_size(self):
        if not self.sc.elasticity_enabled:
            return self.sc.max_workers
        per = self.sc._resources_per_worker_not_none
        avail = mpiray.available_resources()
        fits = self.sc.max_workers
        for k, v in per.items():
            if v > 0:
                fits = min(fits, int(avail.get(k, 0.0) / v + 1e-9))
        n = max(self.sc.min_workers, min(self.sc.max_workers, fits))
        return n

    def _place(self, group):
        """Create the placement group and wait for it. An elastic run takes fewer workers (down
        to min) when the group does not fit now. A group that can never fit is an error at the
        first attempt; when restarting after a failure the cluster may be short only for a
        while (a dead local worker is being replaced, a node is coming back), so it is tried
        again for up to ``MPIRAY_TRAIN_RESOURCE_WAIT_S`` (120 s)."""
        restarting = self.generation > 1
        wait_s = float(os.environ.get("MPIRAY_TRAIN_RESOURCE_WAIT_S", "120"))
        infeasible_since = None
        while True:
            if restarting and not self._cluster_can_hold(group.n):
                # do not ask for a group the cluster cannot hold yet (the head would call it
                # infeasible); wait for the capacity to come back
                infeasible_since = infeasible_since or time.time()
                if time.time() - infeasible_since > wait_s:
                    raise ControllerError(ValueError(
                        "after a failure the cluster no longer has room for the training workers: " +
                        self._infeasible_message(group.n, "waited %.0f s" % wait_s))) from None
                if self.sc.elasticity_enabled and group.n > self.sc.min_workers:
                    group.n -= 1
                    continue
                time.sleep(0.2)
                continue
            group.create_placement_group()
            shrinkable = self.sc.elasticity_enabled and group.n > self.sc.min_workers
            try:
                if group.wait_placed(2.0 if shrinkable else 30.0):
                    return
            except Exception as e:
                if "nfeasible" not in type(e).__name__ and "nfeasible" not in str(e):
                    raise
                self._remove_pg(group)
                if shrinkable:
                    group.n -= 1
                    continue
                if not restarting:
                    raise ControllerError(ValueError(self._infeasible_message(group.n, e))) from None
                infeasible_since = infeasible_since or time.time()
                if time.time() - infeasible_since > wait_s:
                    raise ControllerError(ValueError(
                        "after a failure the cluster no longer has room for the training workers: " +
                        self._infeasible_message(group.n, e))) from None
                if infeasible_since == time.time() or int(time.time() - infeasible_since) % 30 == 0:
                    logger.info("waiting for the cluster to regain room for %d training workers", group.n)
                time.sleep(1.0)
                continue
            if shrinkable:
                self._remove_pg(group)
                group.n -= 1
                continue
            # fixed size (or elastic at min): keep waiting, saying what is missing now and then
            logger.warning("waiting for resources for %d training workers (%s each); available now: %s",
                           group.n, _fmt(self.sc._resources_per_worker_not_none), _fmt(mpiray.available_resources()))
            while not group.wait_placed(60.0):
                logger.warning("still waiting for resources for %d training workers (%s each); available: %s",
                               group.n, _fmt(self.sc._resources_per_worker_not_none),
                               _fmt(mpiray.available_resources()))
            return

    def _cluster_can_hold(self, n):
        total = mpiray.cluster_resources()
        return all(total.get(k, 0.0) + 1e-9 >= v * n for k, v in self.sc._resources_per_worker_not_none.items())

    def _remove_pg(self, group):
        from ...util.placement_group import remove_placement_group
        try:
            remove_placement_group(group.pg)
        except Exception:
            pass
        group.pg = None

    def _infeasible_message(self, n, err):
        per = self.sc._resources_per_worker_not_none
        need = {k: v * n for k, v in per.items()}
        return (f"ScalingConfig(num_workers={self.sc.num_workers}, resources_per_worker={_fmt(per)}, "
                f"placement_strategy={self.sc.placement_strategy!r}) can never be placed: the training workers "
                f"need {_fmt(need)} in all, the cluster has {_fmt(mpiray.cluster_resources())} "
                f"({len(mpiray.nodes())} node(s)). Use fewer workers or smaller resources_per_worker, or start "
                f"the job with more processes/nodes." + (f" ({err})" if len(str(err)) < 200 else ""))

    def _configure(self, group):
        base = {"experiment_name": self.rc.name, "storage_path": self.rc.storage_path,
                "run_path": self.storage.path, "trial_name": self.tune_info.get("trial_name"),
                "trial_id": self.tune_info.get("trial_id"), "trial_dir": self.tune_info.get("trial_dir"),
                "trial_resources": self.tune_info.get("trial_resources"), "metadata": {}}
        self._contexts = group.contexts(base)
        share = getattr(self.backend, "share_cuda_visible_devices", False)
        refs = []
        for rank, (actor, ctx) in enumerate(zip(group.actors, self._contexts)):
            env = {"RANK": ctx["world_rank"], "WORLD_SIZE": ctx["world_size"], "LOCAL_RANK": ctx["local_rank"],
                   "LOCAL_WORLD_SIZE": ctx["local_world_size"], "NODE_RANK": ctx["node_rank"]}
            # as Ray and torchrun: a worker's math libraries use as many threads as it has CPUs
            # (OpenMP threads that spin on cores another rank needs make DDP crawl)
            threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, int(self.sc.num_cpus_per_worker or 1)))
            env["OMP_NUM_THREADS"] = threads
            ctx["num_threads"] = int(threads) if threads.isdigit() else None
            own = group.infos[rank]["gpu_ids"]
            if own:
                if share:
                    visible = []
                    for inf in group.infos:
                        if inf["node_id"] == group.infos[rank]["node_id"]:
                            visible += [g for g in inf["gpu_ids"] if g not in visible]
                    visible = sorted(visible, key=lambda g: (len(g), g))
                else:
                    visible = list(own)
                env["CUDA_VISIBLE_DEVICES"] = ",".join(visible)
                ctx["gpu_ids"] = own
                ctx["device_index"] = visible.index(own[0])
            refs.append(actor.configure.remote(ctx, env))
        mpiray.get(refs)

    def _shard_datasets(self, n):
        from .data import shard_datasets
        return shard_datasets(self.datasets, self.dataset_config, n)

    # ================================================================== watching a group
    def _watch(self, group):
        n = len(group.actors)
        queues = [deque() for _ in range(n)]
        polls = {a.poll.remote(_POLL_TIMEOUT): r for r, a in enumerate(group.actors)}
        finished = set()
        errors = {}
        dead = set()
        return_value = None
        first_error_at = None
        next_resize_check = time.time() + self.sc.elastic_resize_monitor_interval_s
        grow_since = grow_ckpts = None
        if self.sc.elasticity_enabled and n < self.sc.max_workers:
            self._make_probes(self.sc.max_workers - n)
        while True:
            refs = list(polls)
            if refs:
                ready, _ = mpiray.wait(refs, num_returns=1, timeout=0.5)
                if ready:
                    more, _ = mpiray.wait(refs, num_returns=len(refs), timeout=0)
                    ready = list(set(ready) | set(more))
            else:
                ready = []
                time.sleep(0.05)
            for ref in ready:
                rank = polls.pop(ref)
                try:
                    reports, fin, err, rv = mpiray.get(ref)
                except Exception as e:
                    dead.add(rank)
                    info = group.infos[rank]
                    errors.setdefault(rank, (e, f"training worker rank {rank} (pid={info['pid']}, "
                                                f"host={info['host']}) died: {e}"))
                    first_error_at = first_error_at or time.time()
                    continue
                queues[rank].extend(reports)
                if err is not None:
                    errors.setdefault(rank, err)
                    first_error_at = first_error_at or time.time()
                if fin:
                    finished.add(rank)
                    if rank == 0:
                        return_value = rv
                else:
                    polls[group.actors[rank].poll.remote(_POLL_TIMEOUT)] = rank
            while all(queues):
                self._commit([q.popleft() for q in queues])
            if errors:
                # give the other workers a moment to report theirs (the first error is the cause;
                # the peers of a dead worker then fail in their collectives)
                if time.time() - first_error_at < 0.5 and len(errors) < n:
                    continue
                out = _Outcome("failed", errors)
                out.note_alive = set(range(n)) - dead
                return out
            if len(finished) == n:
                left = sum(len(q) for q in queues)
                if left:
                    logger.warning("%d report(s) were not made by every worker and were dropped", left)
                return _Outcome("finished", return_value=return_value)
            if self._walltime.is_set() and self._walltime_done.is_set():
                return _Outcome("preempted")
            if self.sc.elasticity_enabled and self._probes and time.time() >= next_resize_check:
                # grow once the probes are placed, at the group's next checkpoint (so that the
                # restart loses nothing), or one more interval later if none comes
                next_resize_check = time.time() + min(1.0, self.sc.elastic_resize_monitor_interval_s)
                if grow_since is None:
                    grow = self._probes_placed()
                    if grow:
                        grow_since, grow_ckpts = time.time(), self._checkpoints_committed
                if grow_since is not None and (
                        self._checkpoints_committed > grow_ckpts or
                        time.time() - grow_since >= self.sc.elastic_resize_monitor_interval_s):
                    return _Outcome("resize", note=f"{self._probes_placed()} more worker(s) fit now")

    def _commit(self, items):
        """Report i of every worker is in: record rank 0's metrics and the checkpoint."""
        r0 = items[0]
        names = {it["checkpoint"] for it in items if it["checkpoint"]}
        if len(names) > 1:
            raise ControllerError(RuntimeError(
                f"the workers reported different checkpoint directories for one report: {sorted(names)} "
                "(pass the same checkpoint_dir_name on every rank, or none)"))
        name = next(iter(names)) if names else None
        with self._lock:  # the walltime callback saves the snapshot from another thread
            ckpt = self.manager.record_report(dict(r0["metrics"]), name, r0.get("time_this_iter_s", 0.0))
        if ckpt is not None:
            self._checkpoints_committed += 1
        if self._pending_restart is not None:
            pr = self._pending_restart
            pr["resumed_after_s"] = time.time() - pr["detected_at"]
            pr["num_workers"] = len(items)
            self.restarts.append(pr)
            self._pending_restart = None
            logger.warning("training resumed with %d worker(s) %.2f s after the group was stopped (%s)",
                           len(items), pr["resumed_after_s"], pr["reason"])
        row = dict(r0["metrics"])
        now = r0["time"]
        row.update({
            "timestamp": int(now), "checkpoint_dir_name": name, "done": False,
            "training_iteration": self.manager.num_reports,
            "date": time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now)),
            "time_this_iter_s": r0.get("time_this_iter_s", 0.0), "time_total_s": self.manager.time_total_s,
            "pid": self._contexts[0]["pid"] if self.sc.num_workers else os.getpid(),
            "hostname": self._contexts[0]["hostname"] if self.sc.num_workers else _HOST,
            "node_ip": self._contexts[0]["node_ip"] if self.sc.num_workers else node_ip(),
            "world_size": len(items),
        })
        self.storage.log_result(row)
        if ckpt is not None and self._walltime.is_set():
            self._commit_after_walltime.set()
        metrics = [dict(it["metrics"]) for it in items]
        for cb in self.callbacks:
            if hasattr(cb, "after_report"):
                cb.after_report(run_context=self.run_context, metrics=metrics, checkpoint=ckpt)
            else:
                self._log_to_tune_logger(cb, row)

    # ================================================================== elastic probes
    def _make_probes(self, k):
        self._kill_probes()
        per = self.sc._resources_per_worker_not_none
        opts = {"num_cpus": per.get("CPU", 0)}
        if per.get("GPU"):
            opts["num_gpus"] = per["GPU"]
        if per.get("memory"):
            opts["memory"] = per["memory"]
        custom = {kk: v for kk, v in per.items() if kk not in ("CPU", "GPU", "memory")}
        if custom:
            opts["resources"] = custom
        cls = mpiray.remote(_Probe)
        for _ in range(k):
            try:
                a = cls.options(**opts).remote()
                self._probes.append((a, a.ready.remote()))
            except Exception as e:  # e.g. no node could ever hold one more worker
                logger.debug("elastic probe not created: %s", e)
                break

    def _probes_placed(self):
        if not self._probes:
            return 0
        refs = [r for _, r in self._probes]
        ready, _ = mpiray.wait(refs, num_returns=len(refs), timeout=0)
        ok = 0
        for r in ready:
            try:
                mpiray.get(r)
                ok += 1
            except Exception:
                pass
        return ok

    def _kill_probes(self):
        for a, _ in self._probes:
            try:
                mpiray.kill(a)
            except Exception:
                pass
        self._probes = []

    # ================================================================== teardown
    def _teardown(self, alive=None):
        group, self.group = self.group, None
        if group is None:
            return
        self._kill_probes()
        try:
            if group.actors:
                try:
                    self.backend.on_shutdown(group, self.backend_config)
                except Exception as e:
                    logger.debug("backend shutdown: %s", e)
            group.shutdown(grace_s=float(os.environ.get("MPIRAY_TRAIN_STOP_GRACE_S", "10")), alive=alive)
        finally:
            group.actors = []

    # ================================================================== local mode
    def _run_local(self, train_fn_ref):
        """ScalingConfig(num_workers=0): the loop runs in this process (Ray's local mode)."""
        self.manager.rewind_to_latest()
        ck = self.manager.latest_checkpoint()
        ctx = {"experiment_name": self.rc.name, "storage_path": self.rc.storage_path, "run_path": self.storage.path,
               "world_rank": 0, "world_size": 1, "local_rank": 0, "local_world_size": 1, "node_rank": 0,
               "pid": os.getpid(), "hostname": _HOST, "node_ip": node_ip(), "metadata": {}}
        self._contexts = [ctx]
        shards = self._shard_datasets(1)
        w = TrainWorker()
        self._local_worker = w
        w.configure(ctx, {})
        w.start({"context": ctx, "run_path": self.storage.path, "report_base": self.manager.num_reports,
                 "checkpoint": ck.path if ck else None, "train_fn": train_fn_ref, "datasets": shards[0],
                 "sync_actor": None})
        try:
            while True:
                reports, fin, err, rv = w.poll(0.5)
                for it in reports:
                    self._commit([it])
                if err is not None:
                    raise WorkerGroupError(err[1], {0: err[0]})
                if fin:
                    return rv
        finally:
            w.abort(5.0)
            w.shutdown()

    # ================================================================== walltime
    def on_walltime_signal(self):
        """The Slurm early warning (or SIGTERM): tell the loops (``get_preemption_info()``),
        wait a little for a new checkpoint, make sure the snapshot is on disk. The runtime then
        stops the job; a requeued job resumes from the snapshot."""
        if self._walltime.is_set():
            return
        grace = float(os.environ.get("MPIRAY_TRAIN_WALLTIME_GRACE_S", "30"))
        logger.warning("walltime signal: asking the training loops to checkpoint (up to %.0f s), then the job "
                       "stops; run it again with the same RunConfig(name, storage_path) to resume", grace)
        self._walltime_deadline_ms = int((time.time() + grace) * 1000)
        self._walltime.set()
        try:
            self._send_preemption()
        except Exception as e:
            logger.debug("preemption notice: %s", e)
        self._commit_after_walltime.wait(grace)
        with self._lock:
            try:
                self.manager.save()
                self.storage.flush()
            except Exception as e:
                logger.warning("could not save the run's snapshot: %s", e)
        ck = self.manager.latest_checkpoint()
        logger.warning("walltime: latest checkpoint %s", ck.path if ck else "(none)")
        self._walltime_done.set()

    def _send_preemption(self):
        group = self.group
        local = getattr(self, "_local_worker", None)
        if local is not None:
            local.set_preemption(PreemptionInfo(getattr(self, "_walltime_deadline_ms", None),
                                                {"local": [0]}))
            return
        if group is None or not group.actors:
            return
        nodes = {}
        for ctx in self._contexts:
            nodes.setdefault(ctx["node_id"], []).append(ctx["world_rank"])
        info = PreemptionInfo(getattr(self, "_walltime_deadline_ms", None), nodes)
        mpiray.get([a.set_preemption.remote(info) for a in group.actors])

    # ================================================================== callbacks
    def _notify_exception(self, errors):
        excs = {r: e for r, (e, _) in errors.items()}
        for cb in self.callbacks:
            if hasattr(cb, "after_exception"):
                try:
                    cb.after_exception(run_context=self.run_context, worker_exceptions=excs)
                except Exception as e:
                    logger.warning("callback %s.after_exception raised: %s", type(cb).__name__, e)

    def _group_error(self, errors, failures, mf):
        first = _primary_rank(errors)
        ranks = [first] + sorted(r for r in errors if r != first)
        lines = []
        for r in ranks:
            lines.append(errors[r][1].rstrip())
        msg = "\n".join(lines)
        if mf:
            msg += f"\n(the worker group failed {failures} time(s); FailureConfig(max_failures={mf}))"
        err = WorkerGroupError(msg, {r: errors[r][0] for r in ranks})
        cause = errors[first][0]
        if isinstance(cause, BaseException):
            err.__cause__ = cause
        return err

    # Tune logger callbacks (MLflow, W&B, CSV...) see the run as one trial
    def _start_loggers(self):
        loggers = [cb for cb in self.callbacks if not hasattr(cb, "after_report")]
        if not loggers:
            return
        self._logger_trial = _RunAsTrial(self.rc.name, dict(self.train_loop_config or {}), self.storage.path)
        for cb in loggers:
            try:
                if hasattr(cb, "setup"):
                    cb.setup()
                cb.log_trial_start(self._logger_trial)
            except Exception as e:
                logger.warning("callback %s failed to start: %s", type(cb).__name__, e)

    def _log_to_tune_logger(self, cb, row):
        if self._logger_trial is None:
            return
        row = dict(row, config=dict(self.train_loop_config or {}), trial_id=self.rc.name)
        self._logger_trial.last_result = row
        try:
            cb.log_trial_result(self.manager.num_reports, self._logger_trial, row)
        except Exception as e:
            logger.warning("callback %s.log_trial_result raised: %s", type(cb).__name__, e)

    def _end_loggers(self, failed):
        if self._logger_trial is None:
            return
        for cb in self.callbacks:
            if not hasattr(cb, "after_report"):
                try:
                    cb.log_trial_end(self._logger_trial, failed=failed)
                    if hasattr(cb, "on_experiment_end"):
                        cb.on_experiment_end([self._logger_trial])
                except Exception as e:
                    logger.warning("callback %s failed to end: %s", type(cb).__name__, e)


class _RunAsTrial:
    """The training run as the one trial a Tune logger callback sees."""

    def __init__(self, name, config, path):
        self.trial_id = self.trial_name = self.experiment_tag = name
        self.config = self.evaluated_params = config
        self.local_path = self.path = self.logdir = path
        self.last_result = {}
        self.status = "RUNNING"

    def __str__(self):
        return self.trial_name


class _GroupDied(Exception):
    def __init__(self, errors):
        super().__init__("worker group died")
        self.errors = errors


def _is_actor_death(e):
    name = type(e).__name__
    return name in ("ActorDiedError", "RayActorError", "WorkerCrashedError", "ActorUnavailableError")


_PEER_ERRORS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "CollectiveError",
                "NCCL communicator was aborted", "Socket Timeout", "recvBytes", "sendBytes")


def _primary_rank(errors):
    """The rank whose error is the cause: a dead worker first, then an error that is not a
    collective failing because a peer went away, then the lowest rank."""
    def rank_key(r):
        e, text = errors[r]
        died = _is_actor_death(e) or " died" in text.splitlines()[0]
        peer = any(p in str(e) for p in _PEER_ERRORS) or type(e).__name__ == "CollectiveError"
        return (0 if died else 1 if not peer else 2, r)
    return min(errors, key=rank_key)


def _summary(errors):
    if not errors:
        return "no error"
    r = _primary_rank(errors)
    e = errors[r][0]
    who = f"rank {r}" if r >= 0 else "a worker"
    return f"{who}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def _fmt(res):
    parts = []
    for k in sorted(res):
        v = res[k]
        if k == "memory" and v >= 1 << 20:
            parts.append(f"memory: {v / (1 << 30):.2f} GiB")
        elif not k.startswith(("node:", "CPU_group", "GPU_group", "bundle_group", "memory_group")):
            parts.append(f"{k}: {v:g}")
    return "{" + ", ".join(parts) + "}"
