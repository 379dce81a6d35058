"""Datasources: where read_* get their blocks (Ray's ``ray.data.datasource``)."""

from .datasource import Datasource, ReadTask  # noqa: F401
from .partitioning import Partitioning, PartitionStyle  # noqa: F401
