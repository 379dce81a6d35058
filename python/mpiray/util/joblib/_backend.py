"""The joblib backend class: joblib's pool-based backend with mpiray's Pool as the pool."""

from joblib._parallel_backends import MultiprocessingBackend

from ... import _api
from ..multiprocessing import Pool


class RayBackend(MultiprocessingBackend):
    """Runs joblib's batches on an ``mpiray.util.multiprocessing.Pool``."""

    supports_timeout = True
    supports_retrieve_callback = True

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            if not _api.is_initialized():
                _api.init()
            cpus = int(_api.cluster_resources().get("CPU", 1))
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kwargs):
        n_jobs = self.effective_n_jobs(n_jobs)
        self.parallel = parallel
        self._pool = Pool(processes=n_jobs)
        return n_jobs

    def terminate(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
