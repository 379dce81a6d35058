"""What the driver knows about a block without fetching it."""

import os
import socket
import time


class ExecStats:
    """How the task that made a block ran (for ``Dataset.stats()``)."""

    __slots__ = ("wall_s", "cpu_s", "udf_s", "node", "start", "end")

    def __init__(self, wall_s=0.0, cpu_s=0.0, udf_s=0.0, node="", start=0.0, end=0.0):
        self.wall_s = wall_s
        self.cpu_s = cpu_s
        self.udf_s = udf_s
        self.node = node
        self.start = start
        self.end = end

    def __getstate__(self):
        return (self.wall_s, self.cpu_s, self.udf_s, self.node, self.start, self.end)

    def __setstate__(self, st):
        self.wall_s, self.cpu_s, self.udf_s, self.node, self.start, self.end = st


class BlockMetadata:
    """Rows, bytes, schema, source files and provenance of one block."""

    __slots__ = ("num_rows", "size_bytes", "schema", "input_files", "exec_stats", "location", "input_schema")

    def __init__(self, num_rows, size_bytes, schema=None, input_files=None, exec_stats=None, location="",
                 input_schema=None):
        self.num_rows = num_rows
        self.size_bytes = size_bytes
        self.schema = schema
        self.input_files = input_files or []
        self.exec_stats = exec_stats
        self.location = location
        self.input_schema = input_schema

    def __getstate__(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, st):
        for k, v in zip(self.__slots__, st):
            setattr(self, k, v)

    def __repr__(self):
        return f"BlockMetadata(num_rows={self.num_rows}, size_bytes={self.size_bytes})"


class RefBundle:
    """A block in the object store (its ObjectRef) and its metadata."""

    __slots__ = ("ref", "meta")

    def __init__(self, ref, meta):
        self.ref = ref
        self.meta = meta

    @property
    def num_rows(self):
        return self.meta.num_rows

    @property
    def size_bytes(self):
        return self.meta.size_bytes

    def __getstate__(self):
        return (self.ref, self.meta)

    def __setstate__(self, st):
        self.ref, self.meta = st


_NODE = None


def node_name():
    global _NODE
    if _NODE is None:
        _NODE = f"{socket.gethostname()}:{os.getpid()}"
    return _NODE


def wall():
    return time.time()
