from .trial import Trial


class Experiment:
    """Ray's legacy ``tune.Experiment`` spec (accepted by ``tune.run_experiments``)."""

    def __init__(self, name, run, stop=None, time_budget_s=None, config=None, resources_per_trial=None,
                 num_samples=1, storage_path=None, checkpoint_config=None, max_failures=0, **kwargs):
        self.name = name
        self.run = run
        self.spec = dict(stop=stop, time_budget_s=time_budget_s, config=config or {},
                         resources_per_trial=resources_per_trial, num_samples=num_samples,
                         storage_path=storage_path, checkpoint_config=checkpoint_config,
                         max_failures=max_failures, **kwargs)


__all__ = ["Trial", "Experiment"]
