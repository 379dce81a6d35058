"""The abstract group every backend implements (Ray's ``BaseGroup``)."""

from abc import ABCMeta, abstractmethod

from ..types import (AllGatherOptions, AllReduceOptions, BarrierOptions, BroadcastOptions,
                     RecvOptions, ReduceOptions, ReduceScatterOptions, SendOptions)


class BaseGroup(metaclass=ABCMeta):
    def __init__(self, world_size: int, rank: int, group_name: str):
        self._world_size = world_size
        self._rank = rank
        self._group_name = group_name

    @property
    def rank(self):
        return self._rank

    @property
    def world_size(self):
        return self._world_size

    @property
    def group_name(self):
        return self._group_name

    def destroy_group(self):
        """Free the communicators."""

    @classmethod
    def backend(cls):
        raise NotImplementedError()

    @classmethod
    @abstractmethod
    def check_backend_availability(cls) -> bool:
        raise NotImplementedError()

    @abstractmethod
    def allreduce(self, tensor, allreduce_options=AllReduceOptions()):
        raise NotImplementedError()

    @abstractmethod
    def barrier(self, barrier_options=BarrierOptions()):
        raise NotImplementedError()

    @abstractmethod
    def reduce(self, tensor, reduce_options=ReduceOptions()):
        raise NotImplementedError()

    @abstractmethod
    def allgather(self, tensor_list, tensor, allgather_options=AllGatherOptions()):
        raise NotImplementedError()

    @abstractmethod
    def broadcast(self, tensor, broadcast_options=BroadcastOptions()):
        raise NotImplementedError()

    @abstractmethod
    def reducescatter(self, tensor, tensor_list, reducescatter_options=ReduceScatterOptions()):
        raise NotImplementedError()

    @abstractmethod
    def send(self, tensor, send_options: SendOptions):
        raise NotImplementedError()

    @abstractmethod
    def recv(self, tensor, recv_options: RecvOptions):
        raise NotImplementedError()
