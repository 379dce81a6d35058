"""A joblib backend on mpiray (Ray's ``ray.util.joblib``).

    from mpiray.util.joblib import register_ray
    from joblib import Parallel, delayed, parallel_backend

    register_ray()
    with parallel_backend("ray"):
        results = Parallel(n_jobs=-1)(delayed(f)(x) for x in range(100))

joblib's batches run on an ``mpiray.util.multiprocessing.Pool`` (one actor per job slot);
``n_jobs=-1`` means one per CPU of the cluster. Needs the ``joblib`` package.
"""

__all__ = ["register_ray"]


def register_ray():
    """Register the ``"ray"`` backend with joblib (``parallel_backend("ray")``)."""
    try:
        from joblib.parallel import register_parallel_backend
    except ImportError:
        raise ImportError("mpiray.util.joblib needs the joblib package: pip install joblib") from None
    from ._backend import RayBackend
    register_parallel_backend("ray", RayBackend)
