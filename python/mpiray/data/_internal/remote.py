"""The remote functions and actors that run a dataset's work on the cluster.

Everything here runs on workers through mpiray's public API (``remote``, ``get``, ``put``).
Each task returns two objects: its output (one block, or a list of ObjectRefs of blocks it
``put`` when it produced several) and their metadata, which the driver reads without
fetching blocks.
"""

import collections
import threading
import time

import mpiray as ray
from mpiray import _api

from .. import block as B
from .metadata import BlockMetadata, ExecStats
from .transforms import pack_outputs

_chain_cache = collections.OrderedDict()
_chain_lock = threading.Lock()
_node_id = None


def _node():
    global _node_id
    if _node_id is None:
        try:
            _node_id = str(ray.get_runtime_context().get_node_id())
        except Exception:
            import socket
            _node_id = socket.gethostname()
    return _node_id


def resolve_chain(holder):
    """The TransformChain whose ObjectRef is ``holder[0]`` (cached per process: the UDFs are
    unpickled, and callable classes constructed, once)."""
    ref = holder[0]
    key = ref.hex()
    with _chain_lock:
        chain = _chain_cache.get(key)
        if chain is not None:
            _chain_cache.move_to_end(key)
            return chain
    chain = ray.get(ref)
    chain.init()
    with _chain_lock:
        _chain_cache[key] = chain
        while len(_chain_cache) > 32:
            _chain_cache.popitem(last=False)
    return chain


def _note(e, tctx, chain_name):
    where = tctx.location or f"block {tctx.task_index}"
    msg = f"mpiray.data: {chain_name} failed on {where}"
    try:
        notes = getattr(e, "__notes__", [])
        if msg not in notes:
            e.add_note(msg)
    except Exception:
        pass


def execute(chain, blocks, tctx, input_files=None, input_schema_of=None):
    """Run ``chain`` over ``blocks``; returns (output, metadata) as described above."""
    t0 = time.perf_counter()
    c0 = time.thread_time()
    start = time.time()
    outs = []
    raw_schema = None
    try:
        it = blocks
        if input_schema_of is not None:
            it = input_schema_of(blocks)
        for b in chain.apply(it, tctx):
            outs.append(b)
        if input_schema_of is not None:
            raw_schema = input_schema_of.schema
    except Exception as e:
        _note(e, tctx, chain.name if chain.transforms else tctx.op_name)
        raise
    udf_s = time.perf_counter() - t0
    packed = pack_outputs(outs, tctx.target_max_block_size)
    stats = ExecStats(time.perf_counter() - t0, time.thread_time() - c0, udf_s, _node(), start, time.time())
    metas = [BlockMetadata(B.num_rows(b), B.size_bytes(b), B.schema_of(b), input_files, stats, tctx.location,
                           raw_schema) for b in packed]
    if len(packed) == 1:
        return packed[0], metas[0]
    return [ray.put(b) for b in packed], metas


def execute_deferred(read_task, tctx):
    """A read task with nothing fused after it whose reader can write its rows straight into
    the object store (``read_deferred``, e.g. HDF5): the block is the task's return value with
    its columns read into the object's shared memory as the runtime stores it (no copy in
    between); a read split into several blocks puts them (as ``execute`` does). Returns what
    ``execute`` returns, or None when the reader has nothing to defer."""
    fn = getattr(read_task, "fn", None)
    deferred = getattr(fn, "read_deferred", None)
    if deferred is None:
        return None
    t0 = time.perf_counter()
    c0 = time.thread_time()
    start = time.time()
    # The rows are read while the runtime stores the block (after this returns): the fills
    # bring the times up to date, before the metadata (the second return value) is pickled.
    stats = ExecStats(0.0, 0.0, 0.0, _node(), start, start)
    try:
        parts = deferred(tctx.target_max_block_size)
        if parts is None:
            return None
        fills = [_Fill(f, tctx, stats, t0, c0) for _, f in parts]
        blocks = [b for b, _ in parts]
        if len(parts) == 1:
            # One block: the task's return value, its rows read while the runtime stores it.
            out = _api._filled(blocks[0], fills[0])
        else:
            out = [ray.put(b, _fill=f) for b, f in zip(blocks, fills)]
    except Exception as e:
        _note(e, tctx, tctx.op_name)
        raise
    _Fill.update(stats, t0, c0)
    files = read_task.input_files
    metas = [BlockMetadata(B.num_rows(b), B.size_bytes(b), B.schema_of(b), files, stats, tctx.location,
                           B.schema_of(b)) for b in blocks]
    return out, (metas[0] if len(parts) == 1 else metas)


class _Fill:
    """put/_filled's fill of a deferred read: reads each deferred column into its buffer; an
    error gets the read task's note (its block's location)."""

    def __init__(self, fills, tctx, stats, t0, c0):
        self.fills = fills
        self.tctx = tctx
        self.stats = stats
        self.t0 = t0
        self.c0 = c0

    @staticmethod
    def update(stats, t0, c0):
        stats.wall_s = stats.udf_s = time.perf_counter() - t0
        stats.cpu_s = time.thread_time() - c0
        stats.end = time.time()

    def __call__(self, _i, dst, src):
        f = self.fills.get(src)
        if f is None:
            return False
        try:
            f(dst)
        except Exception as e:
            _note(e, self.tctx, self.tctx.op_name)
            raise
        self.update(self.stats, self.t0, self.c0)
        return True


class _SchemaTap:
    """Passes blocks through and remembers the schema of the first (a read's raw schema, to
    report files whose schemas differ)."""

    def __init__(self):
        self.schema = None

    def __call__(self, blocks):
        for b in blocks:
            if self.schema is None and B.num_rows(b):
                self.schema = B.schema_of(b)
            yield b


@ray.remote(num_returns=2)
def map_task(holder, tctx, read_task, *blocks):
    """A fused map stage over one read task or one bundle of input blocks."""
    chain = resolve_chain(holder)
    if read_task is not None:
        if not chain.transforms:
            out = execute_deferred(read_task, tctx)
            if out is not None:
                return out
        return execute(chain, read_task(), tctx, read_task.input_files, _SchemaTap())
    return execute(chain, iter(blocks), tctx)


@ray.remote
class MapWorker:
    """An actor of an actor pool: constructs the chain's callable classes once."""

    def __init__(self, holder):
        self.holder = holder
        self.chain = resolve_chain(holder)

    def ready(self):
        return True

    @ray.method(num_returns=2)
    def process(self, tctx, read_task, *blocks):
        if read_task is not None:
            if not self.chain.transforms:
                out = execute_deferred(read_task, tctx)
                if out is not None:
                    return out
            return execute(self.chain, read_task(), tctx, read_task.input_files, _SchemaTap())
        return execute(self.chain, iter(blocks), tctx)


def block_meta(b, location=""):
    return BlockMetadata(B.num_rows(b), B.size_bytes(b), B.schema_of(b), None, None, location)


@ray.remote(num_returns=2)
def slice_task(block, start, end):
    from .transforms import compact
    b = compact(B.slice_block(block, start, end))
    return b, block_meta(b)


@ray.remote(num_returns=2)
def concat_slices_task(spec, *blocks):
    """Rows ``spec = [(i, start, end), ...]`` of ``blocks`` concatenated into one block."""
    from .transforms import compact
    parts = [B.slice_block(blocks[i], s, e) for i, s, e in spec]
    b = compact(B.concat(parts)) if parts else B.empty_block()
    return b, block_meta(b)


@ray.remote
def to_format_task(block, fmt, column=None):
    """A block as a numpy array / dict of arrays, pandas or pyarrow (to_*_refs)."""
    if fmt == "numpy":
        d = B.to_numpy_dict(block)
        if column is not None:
            return d[column]
        return d
    if fmt == "pandas":
        return B.to_pandas(block)
    return B.to_arrow(block)
