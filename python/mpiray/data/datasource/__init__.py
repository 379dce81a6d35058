"""Datasources: where read_* get their blocks (Ray's ``ray.data.datasource``)."""

from .datasource import Datasource, ReadTask
from .partitioning import Partitioning, PartitionStyle

__all__ = ["Datasource", "ReadTask", "Partitioning", "PartitionStyle"]
