"""``ResourceChangingScheduler``: gives running trials more (or fewer) resources while the
experiment runs, e.g. when other trials finish and leave CPUs free."""

from ..resources import PlacementGroupFactory, resources_to_pgf
from ..search.searcher import check_kwargs
from .trial_scheduler import FIFOScheduler, TrialScheduler


class DistributeResources:
    """Spread the cluster's free CPUs (and GPUs) evenly over the live trials: each trial gets
    at least its base request, plus an equal share of what is left (whole CPUs)."""

    def __init__(self, add_bundles=False, increase_by=None, increase_by_times=-1,
                 reserve_resources=None, **kwargs):
        check_kwargs("DistributeResources", kwargs, ["add_bundles", "increase_by",
                                                     "increase_by_times", "reserve_resources"])
        self.add_bundles = add_bundles
        self.reserve = dict(reserve_resources or {})

    def __call__(self, tune_controller, trial, result, scheduler):
        base = scheduler._base_resources.setdefault(trial.trial_id, trial.placement_group_factory)
        total = tune_controller.cluster_resources()
        cpus = total.get("CPU", 0) - self.reserve.get("CPU", 0)
        live = [t for t in tune_controller.get_trials() if t.status in ("RUNNING", "PENDING", "PAUSED")]
        if not live:
            return None
        base_cpu = base.head_cpus or 1.0
        share = max(base_cpu, float(int(cpus // len(live))))
        bundles = base.bundles
        bundles[0] = dict(bundles[0], CPU=share)
        return PlacementGroupFactory(bundles, base.strategy)


class DistributeResourcesToTopJob(DistributeResources):
    pass


class ResourceChangingScheduler(TrialScheduler):
    def __init__(self, base_scheduler=None, resources_allocation_function=None, **kwargs):
        check_kwargs("ResourceChangingScheduler", kwargs, ["base_scheduler", "resources_allocation_function"])
        from .trial_scheduler import FIFOScheduler
        self._base = base_scheduler or FIFOScheduler()
        self._alloc = resources_allocation_function if resources_allocation_function is not None \
            else DistributeResources()
        self._base_resources = {}
        self.changes = []  # (trial id, new PlacementGroupFactory)

    @property
    def metric(self):
        return self._base.metric

    @property
    def mode(self):
        return self._base.mode

    def set_search_properties(self, metric, mode, **spec):
        return self._base.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller, trial):
        self._base_resources.setdefault(trial.trial_id, trial.placement_group_factory)
        self._base.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        self._base.on_trial_error(tune_controller, trial)

    def on_trial_complete(self, tune_controller, trial, result):
        self._base.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        self._base.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        return self._base.choose_trial_to_run(tune_controller)

    def on_trial_result(self, tune_controller, trial, result):
        decision = self._base.on_trial_result(tune_controller, trial, result)
        if decision != TrialScheduler.CONTINUE or self._alloc is None:
            return decision
        new = self._alloc(tune_controller, trial, result, self)
        if new is None:
            return decision
        if isinstance(new, dict):
            new = resources_to_pgf(new)
        if new != trial.placement_group_factory:
            self.changes.append((trial.trial_id, new))
            tune_controller.change_resources(trial, new)
            return TrialScheduler.NOOP
        return decision

    def debug_string(self):
        return f"ResourceChangingScheduler: {len(self.changes)} resource changes; " + self._base.debug_string()

    def __str__(self):
        return "ResourceChangingScheduler"
