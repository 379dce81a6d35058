"""DataContext: the settings of mpiray.data (Ray's ``ray.data.DataContext``).

``DataContext.get_current()`` returns the driver's context; datasets take a copy of it when
they are created, so later changes apply to datasets created afterwards (as Ray).
"""

import copy
import os
import threading

DEFAULT_TARGET_MAX_BLOCK_SIZE = 128 * 1024 * 1024
DEFAULT_TARGET_MIN_BLOCK_SIZE = 1 * 1024 * 1024


class ExecutionResources:
    """Resource limits of an execution (``None``: decided from the cluster)."""

    def __init__(self, cpu=None, gpu=None, object_store_memory=None, memory=None):
        self.cpu = cpu
        self.gpu = gpu
        self.object_store_memory = object_store_memory
        self.memory = memory

    @classmethod
    def for_limits(cls, cpu=None, gpu=None, object_store_memory=None, memory=None):
        return cls(cpu, gpu, object_store_memory, memory)

    def __repr__(self):
        return (f"ExecutionResources(cpu={self.cpu}, gpu={self.gpu}, "
                f"object_store_memory={self.object_store_memory}, memory={self.memory})")


class ExecutionOptions:
    """How an execution runs (Ray's ``ExecutionOptions``).

    ``preserve_order`` is True by default in mpiray (Ray: False): outputs come in the order of
    the inputs, so results are deterministic; set it False to let faster blocks overtake.
    """

    def __init__(self, resource_limits=None, exclude_resources=None, preserve_order=True,
                 actor_locality_enabled=True, verbose_progress=True, locality_with_output=False):
        self.resource_limits = resource_limits or ExecutionResources()
        self.exclude_resources = exclude_resources or ExecutionResources(0, 0, 0, 0)
        self.preserve_order = preserve_order
        self.actor_locality_enabled = actor_locality_enabled
        self.verbose_progress = verbose_progress
        self.locality_with_output = locality_with_output

    def __repr__(self):
        return (f"ExecutionOptions(resource_limits={self.resource_limits}, preserve_order="
                f"{self.preserve_order}, verbose_progress={self.verbose_progress})")


class DataContext:
    """Settings of mpiray.data (a subset of Ray's, same names and defaults unless noted).

    * ``target_max_block_size`` (128 MiB): outputs larger than this are split into blocks.
    * ``target_min_block_size`` (1 MiB): reads are not split into blocks smaller than this.
    * ``read_op_min_num_blocks`` (200): the most blocks a read is split into by default.
    * ``execution_options``: ``resource_limits.object_store_memory`` is the memory budget
      of an execution (bytes of blocks alive in the object store at once; default:
      ``object_store_memory_limit_fraction`` of the node's object store); ``preserve_order``.
    * ``object_store_memory_limit_fraction`` (0.5): see above (Ray's
      ``override_object_store_memory_limit_fraction``).
    * ``enable_progress_bars`` (True), ``enable_operator_progress_bars`` (True): progress
      in the console while a dataset executes (a live display on a terminal, log lines
      otherwise).
    * ``max_tasks_in_flight_per_actor`` (4): calls queued on each actor of an actor pool.
    * ``max_errored_blocks`` (0): blocks whose task may fail before the execution fails
      (-1: any number; the failed blocks are left out).
    """

    _current = None
    _lock = threading.Lock()

    def __init__(self):
        self.target_max_block_size = DEFAULT_TARGET_MAX_BLOCK_SIZE
        self.target_min_block_size = DEFAULT_TARGET_MIN_BLOCK_SIZE
        self.target_shuffle_max_block_size = DEFAULT_TARGET_MAX_BLOCK_SIZE
        self.read_op_min_num_blocks = 200
        self.execution_options = ExecutionOptions()
        self.object_store_memory_limit_fraction = 0.5
        self.enable_progress_bars = _env_bool("MPIRAY_DATA_PROGRESS_BARS", True)
        self.enable_operator_progress_bars = True
        self.enable_rich_progress_bars = False
        self.use_ray_tqdm = False
        self.progress_log_interval_s = 10.0
        self.max_tasks_in_flight_per_actor = 4
        self.max_errored_blocks = 0
        self.use_push_based_shuffle = False
        self.default_hash_shuffle_parallelism = None
        self.enable_tensor_extension_casting = True
        self.verbose_stats_logs = False
        self.log_execution_plan = _env_bool("MPIRAY_DATA_LOG_PLAN", True)

    @staticmethod
    def get_current():
        """The context new datasets copy (created on first use)."""
        with DataContext._lock:
            if DataContext._current is None:
                DataContext._current = DataContext()
            return DataContext._current

    @staticmethod
    def _set_current(ctx):
        with DataContext._lock:
            DataContext._current = ctx

    def copy(self):
        return copy.deepcopy(self)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"DataContext({fields})"


def _env_bool(name, default):
    v = os.environ.get(name)
    if v is None:
        return default
    return v.strip().lower() not in ("0", "false", "no", "off", "")
