"""``@serve.multiplexed``: a replica keeps up to ``max_num_models_per_replica`` models loaded
(least recently used evicted); the handle sends requests for a model id to a replica that has
loaded it when that replica has room (see ``_private/router.py``)."""

import asyncio
import collections
import functools
import inspect
import threading

from .context import get_multiplexed_model_id


class _ModelCache:
    def __init__(self, load, max_models):
        self.load, self.max_models = load, max_models
        self.models = collections.OrderedDict()
        self.loading = {}  # model_id -> asyncio.Future of a load in progress
        self.lock = threading.Lock()

    def _evict(self):
        # The least recently used models are dropped; their __del__ runs when nothing else
        # holds them (calling it here as well would run it twice).
        while len(self.models) > self.max_models:
            self.models.popitem(last=False)

    async def get_async(self, owner, model_id):
        if model_id in self.models:
            self.models.move_to_end(model_id)
            return self.models[model_id]
        fut = self.loading.get(model_id)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self.loading[model_id] = fut
        try:
            args = (owner, model_id) if owner is not None else (model_id,)
            model = await self.load(*args)
            self.models[model_id] = model
            self._evict()
            fut.set_result(model)
            return model
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self.loading.pop(model_id, None)

    def get_sync(self, owner, model_id):
        with self.lock:
            if model_id in self.models:
                self.models.move_to_end(model_id)
                return self.models[model_id]
            args = (owner, model_id) if owner is not None else (model_id,)
            model = self.load(*args)
            self.models[model_id] = model
            self._evict()
            return model


def multiplexed(func=None, max_num_models_per_replica: int = 3):
    """Wraps a model-loading method ``get_model(self, model_id)``: calls with a loaded id return
    the cached model; others load it, evicting the least recently used beyond
    ``max_num_models_per_replica``. Call it with no argument to load the request's model id
    (``serve.get_multiplexed_model_id()``)."""
    if func is not None and not callable(func):
        raise TypeError("@serve.multiplexed takes max_num_models_per_replica as a keyword")
    if isinstance(max_num_models_per_replica, bool) or not isinstance(max_num_models_per_replica, int) \
            or (max_num_models_per_replica < 1 and max_num_models_per_replica != -1):
        raise ValueError(f"max_num_models_per_replica must be -1 or an integer >= 1, got "
                         f"{max_num_models_per_replica!r}")
    limit = float("inf") if max_num_models_per_replica == -1 else max_num_models_per_replica

    def decorate(load):
        params = list(inspect.signature(load).parameters)
        method = bool(params) and params[0] == "self"
        if len(params) != (2 if method else 1):
            raise TypeError(f"@serve.multiplexed function {load.__name__!r} must take exactly "
                            f"one argument, the model id (besides self)")
        attr = f"__serve_model_cache_{load.__name__}"
        plain = {}

        def cache_of(owner):
            store = owner.__dict__ if owner is not None else plain
            c = store.get(attr)
            if c is None:
                c = store.setdefault(attr, _ModelCache(load, limit))
            return c

        def split(args):
            owner = args[0] if method else None
            rest = args[1:] if method else args
            model_id = rest[0] if rest else get_multiplexed_model_id()
            if not isinstance(model_id, str) or not model_id:
                raise ValueError("the model id must be a non-empty string (pass it, or call the "
                                 "handle with .options(multiplexed_model_id=...))")
            return owner, model_id

        if inspect.iscoroutinefunction(load):
            @functools.wraps(load)
            async def wrapper(*args):
                owner, model_id = split(args)
                return await cache_of(owner).get_async(owner, model_id)
        else:
            @functools.wraps(load)
            def wrapper(*args):
                owner, model_id = split(args)
                return cache_of(owner).get_sync(owner, model_id)
        return wrapper

    return decorate(func) if func is not None else decorate
