"""The training workers of one attempt: actors in one placement group.

Ranks: workers are ordered by node (the node of the first bundle first), so the local ranks
of a node are contiguous, as Ray; ``node_rank`` numbers the nodes in that order.
"""

import logging
import time

import mpiray

from .worker import SyncActor, TrainWorker

logger = logging.getLogger("mpiray.train")

_worker_cls = None
_sync_cls = None


def _classes():
    global _worker_cls, _sync_cls
    if _worker_cls is None:
        _worker_cls = mpiray.remote(TrainWorker)
        _sync_cls = mpiray.remote(SyncActor)
    return _worker_cls, _sync_cls


class PlacementTimeout(Exception):
    pass


class WorkerGroup:
    """``n`` workers with ``resources`` each, placed with ``strategy``."""

    def __init__(self, n, resources, strategy, run_id, generation, runtime_env=None):
        self.n = n
        self.resources = dict(resources)
        self.strategy = strategy
        self.run_id = run_id
        self.generation = generation
        self.runtime_env = runtime_env or {}
        self.pg = None
        self.actors = []          # in rank order after start()
        self.infos = []
        self.sync_name = f"mpiray-train-sync-{run_id}-{generation}"
        self.sync_actor = None
        self.shutdown_fns = []    # functions run on every worker at shutdown (backends add theirs)

    # ------------------------------------------------------------------ start
    def create_placement_group(self):
        from ...util.placement_group import placement_group
        bundles = [dict(self.resources) or {"CPU": 0.001} for _ in range(self.n)]
        self.pg = placement_group(bundles, strategy=self.strategy)
        return self.pg

    def wait_placed(self, timeout):
        """True when the group is placed; raises the runtime's InfeasibleError when it never can be."""
        ready, _ = mpiray.wait([self.pg.ready()], timeout=timeout)
        if ready:
            mpiray.get(ready[0])  # raises InfeasibleError
            return True
        return False

    def start_workers(self, attempts=4):
        """Create the actors (one per bundle) and order them by node.

        The placement group holds the workers' resources; an actor asks only for its GPUs
        (so the runtime gives it device ids). mpiray places an actor in the worker process that
        hosts the fewest actors, and a process can host several; torch.distributed and CUDA
        keep one state per process, so a worker that shares its process with another live
        training worker is placed again, while the clashing one stays alive meanwhile (so the
        runtime counts it and picks another process), and is killed afterwards.
        """
        from ...util.scheduling_strategies import PlacementGroupSchedulingStrategy
        worker_cls, _ = _classes()
        opts = {"max_concurrency": 8, "num_cpus": 0}
        if self.resources.get("GPU"):
            opts["num_gpus"] = self.resources["GPU"]
        if self.runtime_env:
            opts["runtime_env"] = self.runtime_env
        actors = [None] * self.n
        infos = [None] * self.n
        todo = list(range(self.n))
        spacers = []
        try:
            for attempt in range(attempts + 1):
                for i in todo:
                    actors[i] = worker_cls.options(
                        scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, i), **opts).remote()
                got = mpiray.get([actors[i].info.remote() for i in todo])
                for i, info in zip(todo, got):
                    infos[i] = info
                seen = {}
                clash = []
                for i in range(self.n):
                    key = (infos[i]["host"], infos[i]["pid"])
                    if infos[i]["shared"] or key in seen:
                        clash.append(i)
                    seen.setdefault(key, i)
                if not clash:
                    break
                if attempt == attempts:
                    for a in actors:
                        _kill(a)
                    where = ", ".join(f"pid {infos[i]['pid']} on {infos[i]['host']}" for i in clash)
                    raise RuntimeError(
                        f"could not give every training worker a process of its own ({where} already host "
                        "a training worker); the job needs a worker process per training worker")
                logger.debug("training workers %s share a process; placing them again", clash)
                for i in clash:
                    if opts.get("num_gpus"):
                        _kill(actors[i])      # it holds the bundle's GPU: it cannot stay as a spacer
                    else:
                        spacers.append(actors[i])
                todo = clash
        finally:
            for a in spacers:
                _kill(a)
        # order by node: the nodes in order of their first bundle
        node_order = []
        for info in infos:
            if info["node_id"] not in node_order:
                node_order.append(info["node_id"])
        order = sorted(range(self.n), key=lambda i: (node_order.index(infos[i]["node_id"]), i))
        self.actors = [actors[i] for i in order]
        self.infos = [infos[i] for i in order]
        return self.infos

    def contexts(self, base_ctx):
        """Per-rank context dicts (world/local/node rank)."""
        nodes = []
        for info in self.infos:
            if info["node_id"] not in nodes:
                nodes.append(info["node_id"])
        per_node = {nid: [i for i, inf in enumerate(self.infos) if inf["node_id"] == nid] for nid in nodes}
        out = []
        for rank, info in enumerate(self.infos):
            peers = per_node[info["node_id"]]
            ctx = dict(base_ctx)
            ctx.update(world_rank=rank, world_size=self.n, local_rank=peers.index(rank),
                       local_world_size=len(peers), node_rank=nodes.index(info["node_id"]),
                       node_id=info["node_id"], node_ip=info["ip"], pid=info["pid"], hostname=info["host"])
            out.append(ctx)
        return out

    def create_sync_actor(self):
        _, sync_cls = _classes()
        self.sync_actor = sync_cls.options(name=self.sync_name, num_cpus=0,
                                           max_concurrency=max(8, 2 * self.n + 2)).remote()
        return self.sync_name

    # ------------------------------------------------------------------ calls
    def execute(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on every worker; the values in rank order."""
        return mpiray.get([a.execute.remote(fn, *args, **kwargs) for a in self.actors])

    def execute_single(self, rank, fn, *args, **kwargs):
        return mpiray.get(self.actors[rank].execute.remote(fn, *args, **kwargs))

    def execute_async(self, fn, *args, **kwargs):
        return [a.execute.remote(fn, *args, **kwargs) for a in self.actors]

    def __len__(self):
        return len(self.actors)

    # ------------------------------------------------------------------ stop
    def shutdown(self, grace_s=10.0, alive=None):
        """Stop the loops, run the backends' shutdown functions, kill the actors and remove
        the placement group. ``alive``: ranks known to be alive (others are only killed).
        A loop that does not stop within ``grace_s`` (stuck in native code) ends its process."""
        alive = set(range(len(self.actors))) if alive is None else set(alive)
        live = [(r, self.actors[r]) for r in sorted(alive) if r < len(self.actors)]
        if live:
            # every loop is told first, then they are awaited together: a loop blocked in a
            # collective ends when its peers' groups go away below
            refs = {r: a.abort.remote(0.0) for r, a in live}
            _get_quiet(list(refs.values()), 5.0)
            deadline = time.time() + grace_s
            pending = dict(live)
            while pending:
                # destroying one rank's process group makes its peers' blocked collectives fail
                outs = {r: a.shutdown.remote(self.shutdown_fns) for r, a in pending.items()}
                res = _get_each(outs, max(1.0, min(5.0, deadline - time.time())))
                pending = {r: a for r, a in pending.items() if res.get(r) is not True and res.get(r) != "dead"}
                if not pending or time.time() >= deadline:
                    break
                time.sleep(0.2)
            for r, a in pending.items():
                logger.warning("training worker rank %d (pid %s) did not stop within %.0f s; ending its process",
                               r, self.infos[r]["pid"] if r < len(self.infos) else "?", grace_s)
                try:
                    a.hard_exit.remote()
                except Exception:
                    pass
        for a in self.actors:
            _kill(a)
        if self.sync_actor is not None:
            _kill(self.sync_actor)
            self.sync_actor = None
        if self.pg is not None:
            from ...util.placement_group import remove_placement_group
            try:
                remove_placement_group(self.pg)
            except Exception:
                pass
            self.pg = None
        self.actors = []


def _kill(actor):
    if actor is None:
        return
    try:
        mpiray.kill(actor)
    except Exception:
        pass


def _get_quiet(refs, timeout):
    try:
        ready, _ = mpiray.wait(refs, num_returns=len(refs), timeout=timeout)
        for r in ready:
            try:
                mpiray.get(r)
            except Exception:
                pass
    except Exception:
        pass


def _get_each(refs, timeout):
    """{key: value | 'dead' | None (no answer in time)}."""
    out = {}
    try:
        ready, _ = mpiray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    except Exception:
        ready = []
    ready = set(ready)
    for k, ref in refs.items():
        if ref in ready:
            try:
                out[k] = mpiray.get(ref)
            except Exception:
                out[k] = "dead"
        else:
            out[k] = None
    return out
