"""The older entry point ``tune.run(...)`` -> ``ExperimentAnalysis`` (Ray's)."""

import inspect

from ..train._config import CheckpointConfig, FailureConfig, RunConfig
from .analysis import ExperimentAnalysis
from .error import TuneError
from .tune_config import TuneConfig

_RAY_IGNORED = {"sync_config", "export_formats", "max_failures", "restore", "server_port", "resume_config",
                "local_dir", "chdir_to_trial_dir", "log_to_file", "progress_reporter", "_remote",
                "_remote_string_queue", "_entrypoint", "storage_filesystem"}


def run(run_or_experiment, *, name=None, metric=None, mode=None, stop=None, time_budget_s=None, config=None,
        resources_per_trial=None, num_samples=1, storage_path=None, storage_filesystem=None, search_alg=None,
        scheduler=None, checkpoint_config=None, verbose=None, progress_reporter=None, log_to_file=False,
        trial_name_creator=None, trial_dirname_creator=None, sync_config=None, export_formats=None,
        max_failures=0, fail_fast=False, restore=None, resume=None, resume_config=None, reuse_actors=False,
        raise_on_failed_trial=True, callbacks=None, max_concurrent_trials=None, keep_checkpoints_num=None,
        checkpoint_score_attr=None, checkpoint_freq=0, checkpoint_at_end=False, checkpoint_keep_all_ranks=None,
        checkpoint_upload_from_workers=None, local_dir=None, chdir_to_trial_dir=None, **kwargs):
    """Run an experiment (Ray's ``tune.run``). Unknown keywords raise ``ValueError``."""
    if kwargs:
        valid = [p for p in inspect.signature(run).parameters if p not in ("run_or_experiment", "kwargs")]
        raise ValueError(f"tune.run() got unknown option(s) {sorted(kwargs)}. Valid options: {sorted(valid)}")
    from .trainable import with_resources
    from .tuner import Tuner
    trainable = run_or_experiment
    if resources_per_trial is not None:
        trainable = with_resources(trainable, resources_per_trial)
    if checkpoint_config is None:
        checkpoint_config = CheckpointConfig(num_to_keep=keep_checkpoints_num,
                                             checkpoint_score_attribute=checkpoint_score_attr,
                                             checkpoint_frequency=checkpoint_freq,
                                             checkpoint_at_end=checkpoint_at_end)
    rc = RunConfig(name=name, storage_path=storage_path or local_dir, stop=stop, callbacks=callbacks,
                   checkpoint_config=checkpoint_config, verbose=verbose,
                   failure_config=FailureConfig(max_failures=max_failures, fail_fast=fail_fast))
    tc = TuneConfig(metric=metric, mode=mode, num_samples=num_samples, search_alg=search_alg, scheduler=scheduler,
                    max_concurrent_trials=max_concurrent_trials, time_budget_s=time_budget_s,
                    reuse_actors=bool(reuse_actors), trial_name_creator=trial_name_creator,
                    trial_dirname_creator=trial_dirname_creator)
    if resume and name is not None:
        import os
        path = os.path.join(rc.resolved_storage_path(), name)
        if Tuner.can_restore(path):
            tuner = Tuner.restore(path, trainable, resume_errored=resume in ("ERRORED_ONLY", "LOCAL+ERRORED"),
                                  restart_errored=resume in ("RESTART_ERRORED",))
        else:
            tuner = Tuner(trainable, param_space=config, tune_config=tc, run_config=rc)
    else:
        tuner = Tuner(trainable, param_space=config, tune_config=tc, run_config=rc)
    grid = tuner.fit()
    analysis = ExperimentAnalysis(grid.experiment_path, trials=grid._trials, default_metric=metric,
                                  default_mode=mode)
    incomplete = [t for t in grid._trials if t.status == "ERROR"]
    if incomplete and raise_on_failed_trial:
        raise TuneError(f"Trials did not complete: {[str(t) for t in incomplete]}")
    return analysis


def run_experiments(experiments, **kwargs):
    from .experiment import Experiment
    exps = experiments if isinstance(experiments, list) else [experiments]
    out = []
    for e in exps:
        if not isinstance(e, Experiment):
            raise ValueError("run_experiments() takes tune.Experiment objects")
        spec = {k: v for k, v in e.spec.items() if v is not None}
        out.extend(run(e.run, name=e.name, **spec, **kwargs).trials)
    return out
