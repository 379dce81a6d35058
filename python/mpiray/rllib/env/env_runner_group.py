"""``EnvRunnerGroup`` (Ray's): the env runner actors, their weights and their failures.

Runners are actors spread over the nodes (``scheduling_strategy="SPREAD"``), each reserving
``num_cpus_per_env_runner`` CPUs. Every ``sample`` call carries the ref of the current weights
(one object in the store per iteration, read by each runner on its node) and returns two
objects: the rollout (left in the store for the learner) and its metrics (read by the
algorithm). A runner that dies or whose env raises is replaced by a fresh actor at the same
index when ``restart_failed_env_runners`` (the error, with the env's traceback, is logged);
otherwise the error is raised (or the runner dropped with ``ignore_env_runner_failures``).
With ``num_env_runners=0`` one runner lives in the algorithm's process.
"""

import logging
import time

from .env_runner import EnvRunnerBase  # noqa: F401  (re-exported for users)
from .multi_agent_env_runner import MultiAgentEnvRunner
from .single_agent_env_runner import SingleAgentEnvRunner
from .utils import EnvError

logger = logging.getLogger("mpiray.rllib")


class _RunnerFailed(Exception):
    pass


def _is_env_error(e):
    return isinstance(e, EnvError) or "EnvError" in type(e).__name__ or "The environment" in str(e)[:200]


class EnvRunnerGroup:
    """The algorithm's env runners (or evaluation runners)."""

    def __init__(self, config, num_env_runners, *, evaluation=False, multi_agent=False):
        import mpiray
        self.config = config
        self.evaluation = evaluation
        self.num_env_runners = int(num_env_runners)
        self.runner_cls = config.env_runner_cls or (MultiAgentEnvRunner if multi_agent else SingleAgentEnvRunner)
        self.local_env_runner = None
        self._actors = {}
        self._inflight = {}    # index -> (metrics_ref, batch_ref)
        self.num_remote_worker_restarts = 0
        self.num_dropped = 0
        self._last_restart = {}
        self._consecutive_failures = 0
        self._fresh = set()    # indices restarted and not yet heard from
        self.last_error = None
        if self.num_env_runners == 0:
            self.local_env_runner = self.runner_cls(config, 0, 0, evaluation=evaluation)
            return
        opts = {"num_cpus": 0 if config._in_tune_trial else config.num_cpus_per_env_runner,
                "num_gpus": config.num_gpus_per_env_runner or 0, "scheduling_strategy": "SPREAD"}
        if config.custom_resources_per_env_runner:
            opts["resources"] = dict(config.custom_resources_per_env_runner)
        self._remote_cls = mpiray.remote(**opts)(self.runner_cls)
        for i in range(1, self.num_env_runners + 1):
            self._actors[i] = self._make(i, recreated=False)
        # constructor errors (unknown env options, spaces) surface here, once
        refs = {i: a.ping.remote() for i, a in self._actors.items()}
        for i, r in refs.items():
            try:
                mpiray.get(r, timeout=max(60.0, config.env_runner_health_probe_timeout_s * 4))
            except Exception:
                self.stop()
                raise

    def _make(self, index, recreated):
        return self._remote_cls.remote(self.config, index, self.num_env_runners, recreated, self.evaluation)

    # ------------------------------------------------------------------ queries
    @property
    def healthy_indices(self):
        return sorted(self._actors)

    def num_healthy_remote_workers(self):
        return len(self._actors)

    def num_remote_env_runners(self):
        return len(self._actors)

    def remote_actors(self):
        return [self._actors[i] for i in sorted(self._actors)]

    def foreach_env_runner(self, fn, local_env_runner=True):
        """``fn(runner)`` on every runner (remote ones, else the local one); the results."""
        import mpiray
        if self.local_env_runner is not None:
            return [fn(self.local_env_runner)]
        return mpiray.get([a.apply.remote(fn) for a in self.remote_actors()])

    def first_runner_call(self, name, *args):
        import mpiray
        if self.local_env_runner is not None:
            return getattr(self.local_env_runner, name)(*args)
        i = self.healthy_indices[0]
        return mpiray.get(getattr(self._actors[i], name).remote(*args))

    # ------------------------------------------------------------------ failures
    def _handle_failure(self, index, err):
        """Replace, drop, or raise (per the fault-tolerance options)."""
        import mpiray
        cfg = self.config
        self.last_error = err
        self._consecutive_failures += 1
        self._inflight.pop(index, None)
        if index in self._fresh and isinstance(err, mpiray.exceptions.GetTimeoutError):
            self.stop()
            raise RuntimeError(
                f"env runner {index} was restarted but its replacement did not answer within "
                f"sample_timeout_s={cfg.sample_timeout_s}: the cluster has no room for it "
                f"(num_cpus_per_env_runner={cfg.num_cpus_per_env_runner}, "
                f"available: {mpiray.available_resources()})") from err
        kind = "its env raised" if _is_env_error(err) else "it failed"
        if not cfg.restart_failed_env_runners and not cfg.ignore_env_runner_failures:
            raise err  # the runner stays in the group: stop() ends it
        old = self._actors.pop(index, None)
        if old is not None:
            try:
                mpiray.kill(old)
            except Exception:
                pass
        if cfg.restart_failed_env_runners:
            if self.num_remote_worker_restarts >= cfg.max_num_env_runner_restarts:
                raise RuntimeError(f"env runner {index}: {kind} and max_num_env_runner_restarts="
                                   f"{cfg.max_num_env_runner_restarts} restarts are used up") from err
            if self._consecutive_failures > cfg.num_consecutive_env_runner_failures_tolerance:
                raise RuntimeError(f"env runners failed {self._consecutive_failures} times in a row "
                                   f"(num_consecutive_env_runner_failures_tolerance="
                                   f"{cfg.num_consecutive_env_runner_failures_tolerance}); last error below") from err
            logger.warning("env runner %d: %s; restarting it (restart_failed_env_runners=True):\n%s", index, kind,
                           err)
            last = self._last_restart.get(index)
            delay = cfg.delay_between_env_runner_restarts_s
            if last is not None and delay and time.monotonic() - last < delay:
                # the same runner failed again soon: wait a little before recreating it
                time.sleep(min(delay, 1.0))
            self._last_restart[index] = time.monotonic()
            self._actors[index] = self._make(index, recreated=True)
            self._fresh.add(index)
            self.num_remote_worker_restarts += 1
            cb = getattr(cfg, "on_env_runners_recreated", None)
            if cb:
                cb(env_runner_group=self, env_runner_indices=[index], is_evaluation=self.evaluation)
        else:
            logger.warning("env runner %d: %s; dropping it (ignore_env_runner_failures=True):\n%s", index, kind, err)
            self.num_dropped += 1
            if not self._actors:
                raise RuntimeError("every env runner failed and ignore_env_runner_failures cannot go on "
                                   "without any") from err

    # ------------------------------------------------------------------ synchronous sampling
    def sample(self, weights_ref, weights_seq_no, **kwargs):
        """One rollout from every healthy runner: a list of (batch_or_ref, metrics); failed
        runners are handled per the config and contribute nothing this time."""
        import mpiray
        if self.local_env_runner is not None:
            weights = mpiray.get(weights_ref) if isinstance(weights_ref, mpiray.ObjectRef) else weights_ref
            out = self.local_env_runner.sample(weights, weights_seq_no, **kwargs)
            return [(out["batches"], out["metrics"])]
        calls = {i: self._sample_call(a, weights_ref, weights_seq_no, kwargs) for i, a in self._actors.items()}
        results = []
        timeout = self.config.sample_timeout_s
        for i, (mref, bref) in calls.items():
            try:
                metrics = mpiray.get(mref, timeout=timeout)
            except Exception as e:  # noqa: BLE001 - every runner failure is handled the same way
                self._handle_failure(i, e)
                continue
            self._consecutive_failures = 0
            self._fresh.discard(i)
            results.append((bref, metrics))
        return results

    def _sample_call(self, actor, weights_ref, seq, kwargs):
        """(metrics_ref, batch_ref) of one sample call."""
        bref, mref = actor.sample_split.options(num_returns=2).remote(weights_ref, seq, **kwargs)
        return mref, bref

    # ------------------------------------------------------------------ asynchronous sampling
    def sample_async(self, weights_ref, weights_seq_no, timeout_s=None, **kwargs):
        """Keep one request in flight per runner; return the (batch_ref, metrics) of those that
        finished (waiting up to ``timeout_s`` for the first)."""
        import mpiray
        if self.local_env_runner is not None:
            return self.sample(weights_ref, weights_seq_no, **kwargs)
        for i, a in self._actors.items():
            if i not in self._inflight:
                self._inflight[i] = self._sample_call(a, weights_ref, weights_seq_no, kwargs)
        by_ref = {m: i for i, (m, _) in self._inflight.items()}
        ready, _ = mpiray.wait(list(by_ref), num_returns=1,
                               timeout=self.config.sample_timeout_s if timeout_s is None else timeout_s)
        if ready:
            more, _ = mpiray.wait([r for r in by_ref if r not in ready], num_returns=len(by_ref) - len(ready),
                                  timeout=0)
            ready = list(ready) + list(more)
        results = []
        for mref in ready:
            i = by_ref[mref]
            _, bref = self._inflight.pop(i)
            try:
                metrics = mpiray.get(mref)
            except Exception as e:  # noqa: BLE001
                self._handle_failure(i, e)
                continue
            self._consecutive_failures = 0
            self._fresh.discard(i)
            results.append((bref, metrics))
            if i in self._actors:
                self._inflight[i] = self._sample_call(self._actors[i], weights_ref, weights_seq_no, kwargs)
        return results

    # ------------------------------------------------------------------ evaluation
    def sample_episodes(self, weights_ref, weights_seq_no, num_episodes=None, num_timesteps=None, explore=False):
        """Evaluation: episodes (or timesteps) split over the runners; a list of metrics."""
        import mpiray
        if self.local_env_runner is not None:
            weights = mpiray.get(weights_ref) if isinstance(weights_ref, mpiray.ObjectRef) else weights_ref
            return [self.local_env_runner.sample_episodes(weights, weights_seq_no, num_episodes, num_timesteps,
                                                          explore)["metrics"]]
        n = len(self._actors)
        per_ep = None if num_episodes is None else -(-num_episodes // n)
        per_ts = None if num_timesteps is None else -(-num_timesteps // n)
        refs = {i: a.sample_episodes.remote(weights_ref, weights_seq_no, per_ep, per_ts, explore)
                for i, a in self._actors.items()}
        out = []
        for i, r in refs.items():
            try:
                out.append(mpiray.get(r, timeout=self.config.evaluation_sample_timeout_s)["metrics"])
            except Exception as e:  # noqa: BLE001
                self._handle_failure(i, e)
        return out

    # ------------------------------------------------------------------ state
    def sync_state(self, state):
        import mpiray
        if self.local_env_runner is not None:
            self.local_env_runner.set_state(state)
        else:
            mpiray.get([a.set_state.remote(state) for a in self._actors.values()])

    def stop(self):
        import mpiray
        if self.local_env_runner is not None:
            self.local_env_runner.stop()
            self.local_env_runner = None
        actors, self._actors = list(self._actors.values()), {}
        self._inflight = {}
        for a in actors:
            try:
                mpiray.kill(a)
            except Exception:
                pass
