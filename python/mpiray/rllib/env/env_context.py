"""``EnvContext`` (Ray's): the ``env_config`` dict a creator receives, with where it runs."""


class EnvContext(dict):
    """``env_config`` plus ``worker_index`` (0: the local runner), ``num_workers``,
    ``vector_index`` (which sub-env of the runner), ``recreated_worker``, ``remote``."""

    def __init__(self, env_config=None, worker_index=0, vector_index=0, remote=False,
                 num_workers=None, recreated_worker=False):
        super().__init__(env_config or {})
        self.worker_index = worker_index
        self.vector_index = vector_index
        self.remote = remote
        self.num_workers = num_workers
        self.recreated_worker = recreated_worker

    def copy_with_overrides(self, env_config=None, worker_index=None, vector_index=None, remote=None,
                            num_workers=None, recreated_worker=None):
        return EnvContext(dict(self) if env_config is None else env_config,
                          self.worker_index if worker_index is None else worker_index,
                          self.vector_index if vector_index is None else vector_index,
                          self.remote if remote is None else remote,
                          self.num_workers if num_workers is None else num_workers,
                          self.recreated_worker if recreated_worker is None else recreated_worker)

    def __reduce__(self):
        return (EnvContext, (dict(self), self.worker_index, self.vector_index, self.remote, self.num_workers,
                             self.recreated_worker))
