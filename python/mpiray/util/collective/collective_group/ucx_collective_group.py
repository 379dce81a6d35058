"""The "ucx" backend (the default): host memory (numpy arrays, torch CPU tensors); members of
one node share memory, nodes talk over UCX (RDMA where the fabric has it). See
docs/collective.md."""

from ._native_group import NativeGroup


class UCXGroup(NativeGroup):
    _backend = "ucx"
    _device = "host"
