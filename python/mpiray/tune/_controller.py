"""The experiment loop on the driver (Ray's TuneController).

Trials are ``TrialRunner`` actors (with the trial's resources; a placement group when the
trial asks for several bundles). Each running trial has one outstanding ``poll`` call; the
loop waits on all of them at once with ``wait``, feeds each result through the stopper, the
scheduler, the searcher and the callbacks (in Ray's order), and only then sends the trial its
next ``poll``, which is what lets its ``report()`` return: decisions act exactly at the
reported iteration, as in Ray. Where nothing can act on a result (FIFO, no stopper, no time
budget, the basic generator) trials run up to ``MPIRAY_TUNE_RUN_AHEAD`` (64) results ahead
and results travel in batches. Trials that do not fit yet are still created (up to about the
cluster's capacity again), so they start the moment resources free up and, with the Slurm
autoscaler, they are the demand that grows the job."""

import os
import shutil
import threading
import time
import traceback
import uuid

import cloudpickle

from ..exceptions import RayTaskError
from ..train._checkpoint import Checkpoint
from . import _journal
from .callback import CallbackList
from .error import TuneError
from .experiment.trial import Trial
from .logger import LoggerCallback, truncate_logs
from .progress_reporter import TuneReporter
from .resources import PlacementGroupFactory, resources_to_pgf
from .schedulers.trial_scheduler import TrialScheduler
from .search.searcher import Searcher

_POLL_TIMEOUT = 5.0
_STOP_WAIT_S = 2.0      # how long a stopping trial's actor waits for its thread before the kill
_KILL_AFTER_S = 5.0     # kill a stopping actor after this long even without its answer
_active = None                      # the controller of the running fit() (walltime hook)
_hook_registered = False
_hook_lock = threading.Lock()


def _walltime_hook():
    c = _active
    if c is not None:
        c.request_walltime_stop()


def _register_walltime_hook():
    global _hook_registered
    import mpiray
    with _hook_lock:
        if not _hook_registered:
            mpiray.register_checkpoint_callback(_walltime_hook)
            _hook_registered = True


class _Slot:
    """A TrialRunner actor (with the trials' resources; and its placement group when the
    trial asks for several bundles). It runs trials one after another: a finished trial's slot
    takes the next trial at once, and with ``prequeue`` the next trial waits inside it and
    starts the moment the current one returns, without a round trip to the driver."""
    __slots__ = ("actor", "pg", "pgf", "inc", "placed", "running", "queued", "stopping", "dead")

    def __init__(self, actor, pg, pgf):
        self.actor, self.pg, self.pgf = actor, pg, pgf
        self.inc = 0              # the last incarnation (trial run) given to the actor
        self.placed = False       # the actor exists (its resources are held)
        self.running = None       # trial id of the trial whose thread runs (or will, when placed)
        self.queued = None        # trial id waiting inside the actor behind ``running``
        self.stopping = 0         # stop calls in flight (a stopped trial's thread still ends)
        self.dead = False

    def free(self):
        """Nothing runs or waits in it (a stopped trial's thread may still be ending: the
        actor's start() waits for it)."""
        return self.placed and not self.dead and self.running is None and self.queued is None


class _Live:
    """One run (incarnation) of a trial in a slot, and the calls outstanding on it."""
    __slots__ = ("slot", "inc", "poll_ref", "start_ref", "started", "draining", "drain_status", "restored",
                 "queued")

    def __init__(self, slot, inc, queued=False):
        self.slot, self.inc, self.queued = slot, inc, queued
        self.poll_ref = self.start_ref = None
        self.started = False
        self.draining = False       # stopped, but a class trainable's last checkpoint is awaited
        self.drain_status = None    # TERMINATED or PAUSED once drained
        self.restored = False

    @property
    def actor(self):
        return self.slot.actor

    @property
    def pgf(self):
        return self.slot.pgf


class TuneController:
    def __init__(self, *, trainable, trainable_name, is_class, param_space, tune_config, run_config,
                 experiment_path, experiment_name, search_alg, scheduler, stopper, callbacks,
                 trials=None, seed=0, resources=None):
        import mpiray
        from ._trial_runner import TrialRunner
        self._ray = mpiray
        self._runner_cls = mpiray.remote(TrialRunner)
        self._trainable_name = trainable_name
        self._is_class = is_class
        self._tc = tune_config
        self._rc = run_config
        self._metric = tune_config.metric
        self._mode = tune_config.mode
        self.experiment_path = experiment_path
        self.experiment_name = experiment_name
        self._search = search_alg
        self._scheduler = scheduler
        self._stopper = stopper
        self._callbacks = CallbackList(callbacks)
        self._loggers = [c for c in callbacks if isinstance(c, LoggerCallback)]
        self._trials = list(trials or [])
        self._by_id = {t.trial_id: t for t in self._trials}
        self._live = {}          # trial_id -> _Live (started, starting or queued in a slot)
        self._slots = []         # every actor the experiment holds
        self._ref_owner = {}     # poll/start ref -> (kind, trial_id, incarnation)
        self._stopping = {}      # stop ref -> (_Slot, deadline): a stopped trial's thread ending
        self._pings = {}         # ping ref -> _Slot (learning that a new actor is placed)
        self._exp_id = uuid.uuid4().hex[:5]
        self._counter = max([t.index + 1 for t in self._trials], default=0)
        self._seed = seed
        self._iteration = 0
        self._max_failures = run_config.failure_config.max_failures
        self._fail_fast = run_config.failure_config.fail_fast
        self._ckpt_cfg = run_config.checkpoint_config
        self._reuse = bool(tune_config.reuse_actors)
        self._max_concurrent = tune_config.max_concurrent_trials or 0
        self._time_budget = _seconds(tune_config.time_budget_s)
        self._trainable_key = uuid.uuid4().hex
        self._trainable_ref = mpiray.put(cloudpickle.dumps(trainable))
        self._capacity = 1
        self._capacity_at = 0.0
        self._checked_metric = set()
        self._fatal = None
        self._stop_all = False
        self._walltime = threading.Event()
        self._walltime_done = threading.Event()
        self._start = time.time()
        verbose = run_config.verbose if run_config.verbose is not None else 1
        self._reporter = TuneReporter(verbose, metric=self._metric, mode=self._mode,
                                      param_space=param_space)
        self.journal = _journal.Journal(experiment_path)
        self._last_flush = self._last_state_save = time.time()
        self._pbt_ckpt = getattr(scheduler, "checkpoint_interval", 0) if is_class else 0
        self._resources = resources
        self._default_pgf = resources_to_pgf(None if callable(resources) else resources)
        self._window = self._report_window()
        self._flatten = False
        self._dirty = True          # something changed that may let a trial start or end the run
        self._last_launch = 0.0
        from .schedulers.trial_scheduler import FIFOScheduler
        from .search.basic_variant import BasicVariantGenerator
        # the next trial waits inside a running trial's actor (FIFO order is all that decides
        # what runs next, so it can be decided early)
        self._prequeue = (type(self._scheduler) is FIFOScheduler and type(self._search) is BasicVariantGenerator
                          and not is_class and os.environ.get("MPIRAY_TUNE_PREQUEUE", "1") != "0")
        # a result may change what the scheduler or searcher starts next (not so for FIFO and
        # the basic generator: then only ends, starts and status changes do)
        self._result_changes_plan = not (type(self._scheduler) is FIFOScheduler
                                         and type(self._search) is BasicVariantGenerator)

    def _report_window(self):
        """How many results a function trial may report before the driver processed them: 1,
        Ray's semantics (report() returns after the decision on its result), wherever anything
        can act on a result. Where nothing can (FIFO, no stopper, no time budget, the basic
        generator, no fail_fast, no max_failures) trials run up to ``MPIRAY_TUNE_RUN_AHEAD`` (64) results ahead
        and results travel in batches; ``MPIRAY_TUNE_RUN_AHEAD=1`` keeps the lockstep there
        too."""
        from .schedulers.trial_scheduler import FIFOScheduler
        from .search.basic_variant import BasicVariantGenerator
        # max_failures: where a trial restarts depends on which of its checkpoints the driver
        # has registered, so a failure acts on results too
        passive = (type(self._scheduler) is FIFOScheduler and self._stopper is None
                   and self._time_budget is None and type(self._search) is BasicVariantGenerator
                   and not self._fail_fast and self._max_failures == 0)
        if not passive or self._is_class:
            return 1
        return max(1, int(os.environ.get("MPIRAY_TUNE_RUN_AHEAD", "64")))

    def _pgf_for(self, config):
        r = self._resources
        if callable(r) and not isinstance(r, PlacementGroupFactory):
            r = r(config)
        return resources_to_pgf(r)

    # ------------------------------------------------------------------ what schedulers call
    def get_trials(self):
        return self._trials

    def get_trial(self, trial_id):
        return self._by_id.get(trial_id)

    def get_live_trials(self):
        return [t for t in self._trials if not t.is_finished()]

    def is_live(self, trial):
        """Whether ``trial`` has an actor (starting or running): schedulers choose among the
        others in ``choose_trial_to_run``."""
        return trial.trial_id in self._live

    def cluster_resources(self):
        return self._ray.cluster_resources()

    def resume_trial(self, trial):
        """PAUSED -> PENDING: it resumes from its latest checkpoint when there is room."""
        self._dirty = True
        if trial.status == Trial.PAUSED:
            trial.status = Trial.PENDING

    def stop_trial(self, trial):
        """End a trial for good (TERMINATED), whatever it is doing (the scheduler hears of it
        through ``on_trial_complete``, as in Ray)."""
        if trial.is_finished():
            return
        self._release(trial)
        self._set_terminated(trial)

    def pause_trial(self, trial, should_checkpoint=True):
        """Stop the trial's actor; it resumes later from its latest checkpoint (a class
        trainable saves one first when ``should_checkpoint``)."""
        if trial.status in (Trial.PAUSED,) or trial.is_finished():
            return
        self._pause(trial, save=should_checkpoint)

    def exploit_trial(self, trial, donor, new_config, checkpoint=None):
        """PBT: ``trial`` continues from a copy of ``donor``'s checkpoint (``checkpoint``,
        default its latest) with ``new_config``."""
        ck = checkpoint or donor.checkpoint
        src = ck.path
        name = f"checkpoint_{trial.ckpt_index:06d}"
        dest = os.path.join(trial.local_path, name)
        shutil.copytree(src, dest, dirs_exist_ok=True)
        trial.ckpt_index += 1
        self._release(trial)
        trial.config = new_config
        trial.checkpoint = Checkpoint(dest)
        info = getattr(ck, "_mpiray_info", None) or (donor.ckpt_iteration, donor.ckpt_time_total)
        trial.ckpt_iteration, trial.ckpt_time_total = info
        trial.exploited_from = (donor.trial_id, src)
        self.journal.config_changed(trial)
        self.journal.checkpoint(trial)
        if trial.status != Trial.PAUSED:     # as Ray: paused, the scheduler restarts it
            trial.status = Trial.PAUSED
            self.journal.status(trial, Trial.PAUSED)

    def change_resources(self, trial, pgf):
        """ResourceChangingScheduler: restart ``trial`` from its latest checkpoint with new
        resources."""
        self._release(trial)
        trial.placement_group_factory = pgf
        trial.resources_changed = True
        self.journal.config_changed(trial)
        trial.status = Trial.PENDING

    def request_walltime_stop(self):
        """Called from the runtime's signal thread on the walltime early warning: the loop
        saves everything, then this returns (and mpiray shuts down)."""
        self._walltime.set()
        self._walltime_done.wait(float(os.environ.get("MPIRAY_TUNE_WALLTIME_TIMEOUT_S", "60")))

    # ------------------------------------------------------------------ the loop
    def run(self):
        global _active
        _register_walltime_hook()
        _active = self
        total = self._search.total_samples
        self._callbacks.setup(stop=self._stopper, num_samples=self._tc.num_samples,
                              total_num_samples=total)
        self._reporter.experiment_started(self.experiment_name, self.experiment_path,
                                          type(getattr(self._search, "searcher", self._search)).__name__,
                                          str(self._scheduler), total)
        try:
            while True:
                if self._walltime.is_set():
                    self._save_for_walltime()
                    while True:           # mpiray ends the process from here on
                        time.sleep(1)
                self._callbacks.on_step_begin(self._iteration, self._trials)
                now = time.time()
                if self._dirty or now - self._last_launch >= 0.5:
                    self._dirty = False
                    self._last_launch = now
                    self._fill()
                    self._launch()
                if self._fatal is not None:
                    raise self._fatal
                if self._finished():
                    if self._fatal is not None:
                        raise self._fatal
                    break
                self._wait_and_process()
                if self._fatal is not None:
                    raise self._fatal
                self._callbacks.on_step_end(self._iteration, self._trials)
                self._iteration += 1
                self._periodic()
        finally:
            _active = None
            self._shutdown_trials()
            for lg in self._loggers:
                lg.flush()
            self._save_state()
            self.journal.write("end")
            self.journal.close()
        self._callbacks.on_experiment_end(self._trials)
        self._reporter.final(self._trials, self._resource_str())
        return self._trials

    def _finished(self):
        if self._stop_all:
            return not self._live
        if self._live:
            return False
        waiting = any(t.status in (Trial.PENDING, Trial.PAUSED) for t in self._trials)
        if waiting:
            # nothing runs: a paused or pending trial that no scheduler will start is a bug in
            # the scheduler; end instead of spinning (Ray raises a TuneError here too)
            if self._scheduler.choose_trial_to_run(self) is not None:
                self._dirty = True
                return False
            stuck = [str(t) for t in self._trials if t.status in (Trial.PENDING, Trial.PAUSED)]
            self._fatal = TuneError(f"No trial is running and the scheduler {self._scheduler} starts none of "
                                    f"the waiting trials {stuck[:10]}")
            return True
        return self._search.is_finished() or self._search_blocked()

    def _search_blocked(self):
        # a searcher that returns None forever with nothing running can never make progress
        return not self._live and getattr(self, "_search_none", False)

    def _periodic(self):
        now = time.time()
        if now - self._last_flush >= 1.0:
            for lg in self._loggers:
                lg.flush(wait=False)
            self._last_flush = now
        if now - self._last_state_save >= 10.0:
            self._save_state()
            self._last_state_save = now
        if self._stopping:
            self._reap_stopping(now)
        if self._time_budget is not None and now - self._start >= self._time_budget and not self._stop_all:
            self._stop_everything()
        if self._stopper is not None and not self._stop_all:
            try:
                if self._stopper.stop_all():
                    self._stop_everything()
            except NotImplementedError:
                pass
        self._reporter.heartbeat(self._trials, self._resource_str)   # computed only when printed

    def _stop_everything(self):
        """Time budget, a stopper's stop_all or fail_fast: every unfinished trial ends
        (TERMINATED, as Ray), running ones at their current result."""
        self._stop_all = True
        for t in list(self._trials):
            if t.trial_id in self._live:
                self._release(t)
                self._set_terminated(t)
            elif t.status in (Trial.PENDING, Trial.PAUSED):
                self._set_terminated(t)

    # ------------------------------------------------------------------ creating and starting trials
    def _refresh_capacity(self, pgf):
        now = time.time()
        if now - self._capacity_at < 1.0 and getattr(self, "_capacity_pgf", None) == pgf:
            return self._capacity
        self._capacity_at = now
        self._capacity_pgf = pgf
        total = self._ray.cluster_resources()
        req = pgf.required_resources
        cap = None
        for k, v in req.items():
            if v > 0:
                n = int(total.get(k, 0.0) / v + 1e-9)
                cap = n if cap is None else min(cap, n)
        self._capacity = max(1, cap if cap is not None else 64)
        return self._capacity

    def _launch_limit(self, pgf):
        """How many trials may hold an actor (running or starting)."""
        if self._max_concurrent:
            return self._max_concurrent
        return self._refresh_capacity(pgf)

    def _extra(self, pgf):
        """Trials waiting for resources beyond what the cluster holds (the autoscaler's demand,
        and what starts the moment a slot frees): as many again for the basic generator, one
        for searchers that learn from results."""
        if self._max_concurrent:
            return 0
        from .search.basic_variant import BasicVariantGenerator
        return self._refresh_capacity(pgf) if isinstance(self._search, BasicVariantGenerator) else 1

    def _bound(self):
        return sum(1 for l in self._live.values() if not l.queued)

    def _fill(self):
        """Ask the searcher for new trials while there is room to start them."""
        self._search_none = False
        if self._stop_all:
            return
        pgf = self._default_pgf
        limit = self._launch_limit(pgf) + self._extra(pgf)
        if self._prequeue:
            limit += self._launch_limit(pgf)
        while not self._search.is_finished():
            waiting = sum(1 for t in self._trials if t.status == Trial.PENDING and t.trial_id not in self._live)
            if len(self._live) + waiting >= limit:
                return
            trial_id = f"{self._exp_id}_{self._counter:05d}"
            item = self._search._next(trial_id)
            if item is None:
                self._search_none = True
                return
            if item == Searcher.FINISHED:
                return
            config, tag = item
            self._add_trial(trial_id, config, tag)

    def _add_trial(self, trial_id, config, tag):
        index = self._counter
        self._counter += 1
        pgf = self._pgf_for(config)
        tag = f"{index}_{tag}" if tag else str(index)
        name = f"{self._trainable_name}_{trial_id}"
        dirname = _dir_name(self._tc, name, tag, trial_id, index)
        path = os.path.join(self.experiment_path, dirname)
        t = Trial(trial_id, self._trainable_name, config, tag, pgf, path, self.experiment_path, index=index,
                  evaluated_params=config)
        if self._tc.trial_name_creator is not None:
            t.custom_trial_name = str(self._tc.trial_name_creator(t))
        os.makedirs(path, exist_ok=True)
        self._trials.append(t)
        self._by_id[trial_id] = t
        self.journal.trial_created(t)
        self._scheduler.on_trial_add(self, t)

    def _launch(self):
        """Start what the scheduler chooses (PENDING trials, PAUSED ones it resumes): in a free
        actor, in a new one while the cluster has room, or (FIFO) queued in a running trial's
        actor. Then keep actors without a trial waiting for resources as demand for the next
        chosen trials, and release actors that have nothing to do."""
        wanted = None
        if not self._stop_all:
            while True:
                trial = self._scheduler.choose_trial_to_run(self)
                if trial is None:
                    break
                if trial.trial_id in self._live or trial.is_finished():
                    # a scheduler that does not skip trials with an actor: take the next pending one
                    trial = next((t for t in self._trials
                                  if t.status == Trial.PENDING and t.trial_id not in self._live), None)
                    if trial is None:
                        break
                pgf = trial.placement_group_factory
                slot = next((s for s in self._slots if s.pgf == pgf and s.free()), None)
                if slot is not None:
                    self._start_trial(trial, slot)
                    continue
                if self._bound() < self._launch_limit(pgf):
                    self._start_trial(trial, self._new_slot(pgf))
                    continue
                if self._prequeue:
                    host = self._queue_host(pgf)
                    if host is not None:
                        self._start_trial(trial, host, queued=True)
                        continue
                wanted = trial
                break
        self._balance_spares(wanted)
        for s in list(self._slots):
            if s.free() and not s.stopping:
                self._kill(s)      # nothing to run in it: give its resources back (once a
                #                    stopped thread was told, or the actor keeps running it)

    def _queue_host(self, pgf):
        best = None
        for s in self._slots:
            if s.pgf != pgf or s.pg is not None or s.dead or s.queued is not None or s.running is None \
                    or s.stopping:
                continue
            live = self._live.get(s.running)
            if live is None or not live.started or live.draining:
                continue
            if best is None or live.inc < best[1]:
                best = (s, live.inc)
        return best[0] if best else None

    def _balance_spares(self, wanted):
        """Actors without a trial, waiting for resources: one per trial the scheduler wants
        to start next (up to ``_extra``); they are what the Slurm autoscaler sees as demand.
        A spare that gets placed takes the next trial."""
        spares = [s for s in self._slots if not s.placed and not s.dead and s.running is None and s.queued is None]
        want = {}
        if wanted is not None and not self._stop_all:
            pgf = wanted.placement_group_factory
            n = 1 + sum(1 for t in self._trials if t is not wanted and t.status == Trial.PENDING
                        and t.trial_id not in self._live and t.placement_group_factory == pgf)
            want[pgf] = min(n, self._extra(pgf)) if self._extra(pgf) else 0
        for s in spares:
            if want.get(s.pgf, 0) > 0:
                want[s.pgf] -= 1
            else:
                self._kill(s)
        for pgf, n in want.items():
            for _ in range(n):
                self._new_slot(pgf)

    def _start_trial(self, trial, slot, queued=False):
        pgf = slot.pgf
        slot.inc += 1
        live = _Live(slot, slot.inc, queued)
        trial.status = Trial.PENDING   # as Ray: a resumed (paused) trial is pending until it runs
        restore = trial.checkpoint.path if trial.checkpoint is not None else None
        start_iter = trial.ckpt_iteration if restore else 0
        if trial.last_result and trial.last_result.get("training_iteration", 0) > start_iter:
            # it reports those iterations again: each is logged once
            for lg in self._loggers:
                lg.flush_trial(trial)
            truncate_logs(trial.local_path, start_iter)
        if restore:
            live.restored = True    # on_trial_restore instead of on_trial_start (as Ray)
            self._callbacks.on_trial_restore(self._iteration, self._trials, trial)
        spec = {
            "incarnation": live.inc, "trial_id": trial.trial_id, "trial_name": str(trial),
            "trial_dir": trial.local_path, "experiment_name": self.experiment_name,
            "config": trial.config, "trainable_key": self._trainable_key, "trainable_ref": self._trainable_ref,
            "restore_path": restore, "start_iteration": start_iter,
            "start_time_total": trial.ckpt_time_total if restore else 0.0,
            "ckpt_index": trial.ckpt_index, "resources": pgf, "reuse": self._reuse,
            "checkpoint_frequency": self._ckpt_cfg.checkpoint_frequency or self._pbt_ckpt,
            "checkpoint_at_end": bool(self._ckpt_cfg.checkpoint_at_end),
            "report_window": self._window,
        }
        if queued:
            slot.queued = trial.trial_id
            slot.actor.enqueue.remote(spec)   # an actor that dies fails the poll below
        else:
            slot.running = trial.trial_id
            live.start_ref = slot.actor.start.remote(spec)
            self._ref_owner[live.start_ref] = ("start", trial.trial_id, live.inc)
        live.poll_ref = slot.actor.poll.remote(live.inc, _POLL_TIMEOUT)
        self._ref_owner[live.poll_ref] = ("poll", trial.trial_id, live.inc)
        self._live[trial.trial_id] = live
        if trial.start_time is None:
            trial.start_time = time.time()

    def _new_slot(self, pgf):
        bundles = pgf.bundles
        head = bundles[0]
        opts = {"max_concurrency": 8, "num_cpus": head.get("CPU", 0.0)}
        if head.get("GPU"):
            opts["num_gpus"] = head["GPU"]
        if head.get("memory"):
            opts["memory"] = head["memory"]
        custom = {k: v for k, v in head.items() if k not in ("CPU", "GPU", "memory")}
        if custom:
            opts["resources"] = custom
        pg = None
        if len(bundles) > 1 or pgf.strategy != "PACK":
            from ..util.placement_group import placement_group
            from ..util.scheduling_strategies import PlacementGroupSchedulingStrategy
            pg = placement_group(bundles, strategy=pgf.strategy)
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, 0)
        slot = _Slot(self._runner_cls.options(**opts).remote(), pg, pgf)
        self._pings[slot.actor.ping.remote()] = slot
        self._slots.append(slot)
        return slot

    # ------------------------------------------------------------------ waiting and results
    def _wait_and_process(self):
        ray = self._ray
        refs = []
        for live in self._live.values():
            if not live.started and live.start_ref is not None:
                refs.append(live.start_ref)
            if live.poll_ref is not None:
                refs.append(live.poll_ref)
        refs.extend(self._stopping)
        refs.extend(self._pings)
        if not refs:
            time.sleep(0.01)
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=0.5)
        if not ready:
            return
        if len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        # starts first, then results
        ready.sort(key=lambda r: 0 if self._ref_owner.get(r, ("",))[0] == "start" else 1)
        for ref in ready:
            if ref in self._pings:
                slot = self._pings.pop(ref)
                self._dirty = True
                try:
                    ray.get(ref)
                    slot.placed = True
                except Exception:
                    self._slot_died(slot)
                continue
            if ref in self._stopping:
                self._dirty = True
                slot, _ = self._stopping.pop(ref)
                slot.stopping -= 1
                try:
                    ended = ray.get(ref)
                except Exception:
                    ended = True        # the actor is gone
                if not ended and slot.running is None and slot.queued is None:
                    self._kill(slot)    # its thread still runs: do not start another trial in it
                continue
            owner = self._ref_owner.pop(ref, None)
            if owner is None:
                continue
            kind, trial_id, inc = owner
            live = self._live.get(trial_id)
            trial = self._by_id[trial_id]
            if live is None or live.inc != inc:
                continue
            if kind == "start":
                live.start_ref = None
                try:
                    ray.get(ref)
                except Exception as e:  # the actor could not be created or started
                    self._slot_died(live.slot)
                    self._failure(trial, e)
                    continue
                live.slot.placed = True
                self._mark_started(trial, live)
            else:
                live.poll_ref = None
                try:
                    _, results, finished, error, begun = ray.get(ref)
                except Exception as e:  # the trial's actor (or its worker) died
                    self._slot_died(live.slot)
                    if live.queued or not live.started:
                        self._requeue(trial)   # it never ran: no failure of its own
                    else:
                        self._failure(trial, e)
                    continue
                if not begun and finished:
                    self._requeue(trial)       # cancelled before it began (not by us): run it later
                    continue
                if begun:
                    live.slot.placed = True
                    if live.queued:
                        self._promote(live.slot, trial_id)
                    if not live.started:
                        self._mark_started(trial, live)
                self._handle_batch(trial, live, results, finished, error)

    def _promote(self, slot, trial_id):
        """The trial queued in ``slot`` is now its running one."""
        self._dirty = True
        if slot.queued == trial_id:
            slot.queued = None
            slot.running = trial_id
        live = self._live.get(trial_id)
        if live is not None:
            live.queued = False

    def _requeue(self, trial):
        self._dirty = True
        live = self._live.pop(trial.trial_id, None)
        if live is not None:
            self._forget(live)
        trial.status = Trial.PENDING

    def _forget(self, live):
        for ref in (live.poll_ref, live.start_ref):
            if ref is not None:
                self._ref_owner.pop(ref, None)
        live.poll_ref = live.start_ref = None

    def _slot_died(self, slot):
        if not slot.dead:
            slot.dead = True
            self._kill(slot)

    def _mark_started(self, trial, live):
        live.started = True
        self._dirty = True
        if live.draining:
            return
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            trial.status = Trial.RUNNING
        if not live.restored:
            self._callbacks.on_trial_start(self._iteration, self._trials, trial)
        self._reporter.trial_started(trial)

    def _handle_batch(self, trial, live, results, finished, error):
        for r in results:
            if self._live.get(trial.trial_id) is not live or live.draining:
                # decided already (stopped / paused / exploited): later results never happened,
                # except a class trainable's final checkpoint
                if live.draining and "_ckpt_only" in r:
                    self._register_checkpoint(trial, r["_ckpt_only"], r["training_iteration"], trial.last_result)
                continue
            if "_ckpt_only" in r:
                self._register_checkpoint(trial, r["_ckpt_only"], r["training_iteration"], trial.last_result)
                continue
            self._on_result(trial, r)
            if self._fatal is not None:
                return
        if self._live.get(trial.trial_id) is not live:
            return
        if finished:
            if live.draining:
                status = live.drain_status
                self._release(trial, thread_done=True)
                if status == Trial.TERMINATED:
                    self._drop_unregistered_checkpoints(trial)
            elif error is not None:
                cause, tb = error
                self._failure(trial, RayTaskError(str(trial), tb, cause).as_instanceof_cause(), tb,
                              thread_done=True)
            else:
                if trial.last_result is not None:
                    trial.last_result["done"] = True
                self._release(trial, thread_done=True)
                self._set_terminated(trial)
            return
        if live.poll_ref is None:
            # the next poll is the "continue" for what this one returned
            live.poll_ref = live.actor.poll.remote(live.inc, _POLL_TIMEOUT)
            self._ref_owner[live.poll_ref] = ("poll", trial.trial_id, live.inc)

    def _on_result(self, trial, r):
        """One result, in Ray's order: stopper, else scheduler; the searcher (unless
        stopped); callbacks and loggers; then the decision is carried out."""
        ckpt = r.pop("_ckpt", None)
        r["config"] = trial.config
        r["experiment_tag"] = trial.experiment_tag
        if trial.trial_id not in self._checked_metric:
            self._checked_metric.add(trial.trial_id)
            self._check_metric(trial, r)
            if self._fatal is not None:
                return
            self._flatten = self._flatten or any(isinstance(v, dict) for k, v in r.items() if k != "config")
        if ckpt:
            # the scheduler (PBT) sees this result's checkpoint; it is journaled once the
            # result is on disk (below)
            self._set_checkpoint(trial, ckpt, r["training_iteration"], r)
        flat = _flat_result(r) if self._flatten else r
        live = self._live.get(trial.trial_id)
        stop = bool(r.get("done"))
        if self._stopper is not None and not stop:
            try:
                stop = bool(self._stopper(trial.trial_id, r))
            except KeyError as e:
                self._fatal = ValueError(str(e.args[0]) if e.args else str(e))
                return
        decision = TrialScheduler.STOP if stop else self._scheduler.on_trial_result(self, trial, flat)
        if self._result_changes_plan:
            self._dirty = True
        if decision == TrialScheduler.STOP:
            r["done"] = True
        else:
            self._search.on_trial_result(trial.trial_id, flat)
        self._callbacks.on_trial_result(self._iteration, self._trials, trial, r)
        trial.update_last_result(r)
        if ckpt:
            self._journal_checkpoint(trial, r)
        self._reporter.trial_result(trial, r)
        if self._live.get(trial.trial_id) is not live:
            return  # the scheduler restarted or paused it already (exploit, new resources)
        if decision == TrialScheduler.STOP:
            self._stop_running(trial)
        elif decision == TrialScheduler.PAUSE:
            self._pause(trial)

    def _check_metric(self, trial, r):
        if not self._metric or r.get("done") and len(r) < 16:
            return
        if self._metric in r or _flat_has(r, self._metric):
            return
        if os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING") == "1":
            return
        users = [type(x).__name__ for x in (self._scheduler, getattr(self._search, "searcher", None))
                 if x is not None and getattr(x, "metric", None)]
        keys = sorted(k for k in r if k not in _AUTO_KEYS)
        self._fatal = ValueError(
            f"Trial {trial} returned a result which did not include the specified metric "
            f"'{self._metric}' that {' and '.join(users) or 'TuneConfig(metric=...)'} expects. Make sure "
            f"your calls to `tune.report()` include the metric, or set the "
            f"TUNE_DISABLE_STRICT_METRIC_CHECKING environment variable to 1. Reported keys: {keys}")

    def _set_checkpoint(self, trial, path, iteration, metrics):
        ck = Checkpoint(path)
        ck._mpiray_info = (iteration, (metrics or {}).get("time_total_s", trial.ckpt_time_total))
        trial.checkpoint = ck
        trial.ckpt_iteration = iteration
        trial.ckpt_time_total = ck._mpiray_info[1]
        trial.ckpt_index = max(trial.ckpt_index, _ckpt_number(path) + 1)
        trial.checkpoints.append((ck, metrics))
        return ck

    def _journal_checkpoint(self, trial, metrics):
        ck = trial.checkpoint
        for lg in self._loggers:   # the results before a checkpoint are on disk before it is journaled
            lg.flush_trial(trial)
        self.journal.checkpoint(trial)
        self._enforce_num_to_keep(trial)
        self._callbacks.on_checkpoint(self._iteration, self._trials, trial, ck)

    def _register_checkpoint(self, trial, path, iteration, metrics):
        self._set_checkpoint(trial, path, iteration, dict(metrics or {}))
        self._journal_checkpoint(trial, metrics)

    def _enforce_num_to_keep(self, trial):
        n = self._ckpt_cfg.num_to_keep
        if not n or len(trial.checkpoints) <= n:
            return
        attr = self._ckpt_cfg.checkpoint_score_attribute
        latest = trial.checkpoints[-1]
        cands = trial.checkpoints[:-1]
        if attr:
            sign = 1 if self._ckpt_cfg.checkpoint_score_order == "max" else -1
            cands.sort(key=lambda cm: sign * cm[1].get(attr, float("-inf") * sign))
            drop = cands[: len(trial.checkpoints) - n]
        else:
            drop = cands[: len(trial.checkpoints) - n]
        for ck, m in drop:
            trial.checkpoints.remove((ck, m))
            shutil.rmtree(ck.path, ignore_errors=True)
        assert trial.checkpoints[-1] is latest

    # ------------------------------------------------------------------ ending trials
    def _stop_running(self, trial):
        live = self._live.get(trial.trial_id)
        if self._is_class and self._ckpt_cfg.checkpoint_at_end and live is not None and live.started:
            # a class trainable saves once more at its step boundary; keep polling until then
            self._drain(trial, live, Trial.TERMINATED)
            self._set_terminated(trial)
            return
        self._release(trial)
        self._set_terminated(trial)

    def _drain(self, trial, live, status):
        live.draining = True
        live.drain_status = status
        live.actor.stop.remote(live.inc, True)
        if live.poll_ref is None:
            live.poll_ref = live.actor.poll.remote(live.inc, _POLL_TIMEOUT)
            self._ref_owner[live.poll_ref] = ("poll", trial.trial_id, live.inc)

    def _drop_unregistered_checkpoints(self, trial):
        # a trial stopped while saving may leave a checkpoint the experiment never
        # registered: it never happened
        keep = {os.path.basename(c.path) for c, _ in trial.checkpoints}
        try:
            names = os.listdir(trial.local_path)
        except OSError:
            return
        for n in names:
            if n.startswith("checkpoint_") and n not in keep:
                shutil.rmtree(os.path.join(trial.local_path, n), ignore_errors=True)

    def _set_terminated(self, trial, notify_scheduler=True):
        self._dirty = True
        if trial.trial_id not in self._live:
            self._drop_unregistered_checkpoints(trial)
        trial.status = Trial.TERMINATED
        if notify_scheduler:
            self._scheduler.on_trial_complete(self, trial, trial.last_result)
        self._search.on_trial_complete(trial.trial_id, trial.last_result)
        self._callbacks.on_trial_complete(self._iteration, self._trials, trial)
        self.journal.status(trial, Trial.TERMINATED)
        self._reporter.trial_completed(trial)

    def _pause(self, trial, save=True):
        self._dirty = True
        live = self._live.get(trial.trial_id)
        if self._is_class and save and live is not None and live.started and not live.draining:
            # as Ray: a class trainable saves before it pauses and resumes from that checkpoint
            self._drain(trial, live, Trial.PAUSED)
        else:
            self._release(trial)
        trial.status = Trial.PAUSED
        self.journal.status(trial, Trial.PAUSED)

    def _release(self, trial, thread_done=False):
        """The trial leaves its slot. A running thread is told to stop (it ends at its next
        report, at once when it waits for the driver); the slot takes another trial once it
        has, or is released. A trial queued in a slot is taken out before it starts."""
        self._dirty = True
        live = self._live.pop(trial.trial_id, None)
        if live is None:
            return
        self._forget(live)
        slot = live.slot
        if slot.dead:
            return
        if slot.queued == trial.trial_id:
            slot.queued = None
            slot.actor.stop.remote(live.inc)       # cancelled before it begins
            return
        if slot.running == trial.trial_id:
            slot.running = None
            if slot.queued is not None:
                self._promote(slot, slot.queued)     # the actor starts it when this one ends
        if not thread_done:
            ref = slot.actor.stop.remote(live.inc, False, _STOP_WAIT_S)
            slot.stopping += 1
            self._stopping[ref] = (slot, time.time() + _KILL_AFTER_S)

    def _reap_stopping(self, now):
        for ref, (slot, deadline) in list(self._stopping.items()):
            if now >= deadline:
                self._dirty = True
                del self._stopping[ref]
                slot.stopping -= 1
                if slot.running is None and slot.queued is None:
                    self._kill(slot)

    def _kill(self, slot):
        slot.dead = True
        try:
            self._slots.remove(slot)
        except ValueError:
            pass
        try:
            self._ray.kill(slot.actor)
        except Exception:
            pass
        if slot.pg is not None:
            from ..util.placement_group import remove_placement_group
            try:
                remove_placement_group(slot.pg)
            except Exception:
                pass

    def _failure(self, trial, exc, tb=None, thread_done=False):
        self._release(trial, thread_done=thread_done)
        trial.run_metadata.num_failures += 1
        tb = tb or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if self._max_failures < 0 or trial.run_metadata.num_failures <= self._max_failures:
            trial.status = Trial.PENDING  # restarts from its latest checkpoint
            self.journal.status(trial, "RECOVERING", error=tb[-2000:])
            self._callbacks.on_trial_recover(self._iteration, self._trials, trial)
            return
        trial.status = Trial.ERROR
        trial.error = exc
        path = os.path.join(trial.local_path, "error.txt")
        with open(path, "a") as f:
            f.write(f"Failure # {trial.run_metadata.num_failures} (occurred at "
                    f"{time.strftime('%Y-%m-%d_%H-%M-%S')})\n{tb}\n")
        trial.run_metadata.error_filename = path
        try:
            with open(os.path.join(trial.local_path, "error.pkl"), "wb") as f:
                cloudpickle.dump(exc, f)
            trial.run_metadata.pickled_error_filename = os.path.join(trial.local_path, "error.pkl")
        except Exception:
            pass
        self._scheduler.on_trial_error(self, trial)
        self._search.on_trial_complete(trial.trial_id, trial.last_result, error=True)
        self._callbacks.on_trial_error(self._iteration, self._trials, trial)
        self.journal.status(trial, Trial.ERROR, error=tb[-4000:])
        self._reporter.trial_errored(trial)
        if self._fail_fast:
            self._stop_everything()
            if self._fail_fast == "raise":
                self._fatal = exc

    def _shutdown_trials(self):
        stops = []
        for trial_id in list(self._live):
            live = self._live.pop(trial_id)
            if not live.slot.dead:
                stops.append(live.actor.stop.remote(live.inc, False, 0.5, True))
        stops.extend(self._stopping)
        self._stopping = {}
        if stops:
            # give the trials' threads a moment to end at their report, then kill the actors
            try:
                self._ray.wait(stops, num_returns=len(stops), timeout=2.0)
            except Exception:
                pass
        for slot in list(self._slots):
            self._kill(slot)
        self._pings = {}

    # ------------------------------------------------------------------ walltime
    def _save_for_walltime(self):
        """Early warning: running trials stop at their next report or step (class trainables
        checkpoint first), their reported results are written, and the state is synced.
        Trials queued in an actor never start (they start after the restore)."""
        deadline = time.time() + float(os.environ.get("MPIRAY_TUNE_WALLTIME_SAVE_S", "20"))
        for trial_id, live in list(self._live.items()):
            if live.queued and not live.started:
                self._live.pop(trial_id)
                self._forget(live)
                live.slot.queued = None
        for trial_id, live in list(self._live.items()):
            live.actor.stop.remote(live.inc, self._is_class, 0.0, True)
            if not live.started and not live.slot.placed:
                # its actor waits for resources: the trial never ran
                self._live.pop(trial_id)
                self._forget(live)
                self._kill(live.slot)
        interrupted = [self._by_id[tid] for tid, l in self._live.items() if not l.draining]
        self._stop_all = True
        while self._live and time.time() < deadline:
            self._walltime_pass()
        for t in interrupted:
            if t.status in (Trial.RUNNING, Trial.PENDING):
                t.status = Trial.PENDING
                self.journal.status(t, "INTERRUPTED")
        for lg in self._loggers:
            lg.flush()
        self._save_state()
        self.journal.write("interrupted")
        self.journal.sync()
        self._reporter.walltime(self._trials)
        self._walltime_done.set()

    def _walltime_pass(self):
        ray = self._ray
        refs = []
        for tid, l in list(self._live.items()):
            if l.poll_ref is None:
                l.poll_ref = l.actor.poll.remote(l.inc, 0.5)
                self._ref_owner[l.poll_ref] = ("poll", tid, l.inc)
            refs.append(l.poll_ref)
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.2)
        for ref in ready:
            kind, trial_id, inc = self._ref_owner.pop(ref)
            live = self._live.get(trial_id)
            trial = self._by_id[trial_id]
            live.poll_ref = None
            try:
                _, results, finished, error, begun = ray.get(ref)
            except Exception:
                self._live.pop(trial_id, None)
                continue
            for r in results:
                if "_ckpt_only" in r:
                    self._register_checkpoint(trial, r["_ckpt_only"], r["training_iteration"], trial.last_result)
                    continue
                if live.draining:
                    continue
                ckpt = r.pop("_ckpt", None)
                r["config"] = trial.config
                r["experiment_tag"] = trial.experiment_tag
                self._callbacks.on_trial_result(self._iteration, self._trials, trial, r)
                trial.update_last_result(r)
                if ckpt:
                    self._register_checkpoint(trial, ckpt, r["training_iteration"], r)
            if finished:
                self._live.pop(trial_id, None)
                if error is None and not trial.is_finished() and not live.draining and \
                        self._trial_really_done(results):
                    self._set_terminated(trial)

    @staticmethod
    def _trial_really_done(results):
        return bool(results) and bool(results[-1].get("done"))

    # ------------------------------------------------------------------ helpers
    def _save_state(self):
        try:
            self._search.save(os.path.join(self.experiment_path, "searcher-state.pkl"))
        except Exception:
            pass
        try:
            with open(os.path.join(self.experiment_path, "scheduler-state.pkl.tmp"), "wb") as f:
                cloudpickle.dump(self._scheduler, f)
            os.replace(os.path.join(self.experiment_path, "scheduler-state.pkl.tmp"),
                       os.path.join(self.experiment_path, "scheduler-state.pkl"))
        except Exception:
            pass

    def _resource_str(self):
        used = {}
        for tid, live in self._live.items():
            if self._by_id[tid].status == Trial.RUNNING and not live.queued:
                for k, v in live.pgf.required_resources.items():
                    used[k] = used.get(k, 0.0) + v
        try:
            total = self._ray.cluster_resources()
        except Exception:
            total = {}
        return (f"Logical resource usage: {used.get('CPU', 0.0)}/{total.get('CPU', 0.0):g} CPUs, "
                f"{used.get('GPU', 0.0)}/{total.get('GPU', 0.0):g} GPUs")


def _flat_result(r):
    out = {}
    for k, v in r.items():
        if isinstance(v, dict) and k != "config":
            for k2, v2 in _flat_result(v).items():
                out[f"{k}/{k2}"] = v2
        else:
            out[k] = v
    return out


_AUTO_KEYS = {"done", "training_iteration", "trial_id", "date", "timestamp", "time_this_iter_s",
              "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
              "iterations_since_restore", "checkpoint_dir_name", "config", "experiment_tag"}


def _flat_has(r, metric):
    cur = r
    for part in metric.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def _ckpt_number(path):
    base = os.path.basename(path.rstrip("/"))
    try:
        return int(base.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def _seconds(v):
    if v is None:
        return None
    import datetime
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    return float(v)


def _dir_name(tc, name, tag, trial_id, index):
    if tc.trial_dirname_creator is not None:
        return str(tc.trial_dirname_creator(_NameOnly(name, trial_id, tag)))
    short = tag[:60].replace("/", "_").replace(" ", "")
    return f"{name}_{short}" if short else name


class _NameOnly:
    def __init__(self, name, trial_id, tag):
        self.trial_id, self.experiment_tag, self._name = trial_id, tag, name

    def __str__(self):
        return self._name
