"""User callbacks (Ray's ``tune.Callback``): hooks the controller calls on the driver."""


class Callback:
    """Override any of the hooks; they run on the driver in the experiment loop (keep them
    quick: every result passes through ``on_trial_result``)."""

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        pass

    def on_step_begin(self, iteration, trials, **info):
        pass

    def on_step_end(self, iteration, trials, **info):
        pass

    def on_trial_start(self, iteration, trials, trial, **info):
        pass

    def on_trial_restore(self, iteration, trials, trial, **info):
        pass

    def on_trial_save(self, iteration, trials, trial, **info):
        pass

    def on_trial_result(self, iteration, trials, trial, result, **info):
        pass

    def on_trial_complete(self, iteration, trials, trial, **info):
        pass

    def on_trial_recover(self, iteration, trials, trial, **info):
        pass

    def on_trial_error(self, iteration, trials, trial, **info):
        pass

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        pass

    def on_experiment_end(self, trials, **info):
        pass

    def get_state(self):
        return None

    def set_state(self, state):
        pass


class CallbackList:
    def __init__(self, callbacks):
        self._callbacks = list(callbacks)

    def __iter__(self):
        return iter(self._callbacks)

    def __getattr__(self, name):
        cbs = self.__dict__["_callbacks"]

        def call(*args, **kwargs):
            for cb in cbs:
                getattr(cb, name)(*args, **kwargs)
        return call
