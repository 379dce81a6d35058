"""Partition columns from directory names (Ray's ``Partitioning``)."""

import enum
import os


class PartitionStyle(str, enum.Enum):
    HIVE = "hive"
    DIRECTORY = "dir"


class Partitioning:
    """``Partitioning("hive")``: ``.../year=2020/month=1/file`` gives columns year and month;
    ``Partitioning("dir", field_names=["year", "month"])``: ``.../2020/1/file``. Values are
    strings unless ``field_types`` maps a field to ``int``, ``float`` or ``str``."""

    def __init__(self, style="hive", base_dir=None, field_names=None, field_types=None, filesystem=None):
        self.style = PartitionStyle(style)
        self.base_dir = base_dir
        self.field_names = list(field_names) if field_names else None
        self.field_types = dict(field_types or {})
        if self.style == PartitionStyle.DIRECTORY and not self.field_names:
            raise ValueError("Partitioning('dir') needs field_names")

    def __repr__(self):
        return f"Partitioning(style={self.style.value!r}, base_dir={self.base_dir!r}, field_names={self.field_names})"

    def parse(self, path, base):
        """The partition values of ``path`` (a file found under ``base``)."""
        base = self.base_dir or base or ""
        rel = os.path.relpath(os.path.dirname(path), base) if base else os.path.dirname(path)
        parts = [p for p in rel.split(os.sep) if p and p != "."]
        out = {}
        if self.style == PartitionStyle.HIVE:
            for p in parts:
                if "=" in p:
                    k, v = p.split("=", 1)
                    out[k] = v
        else:
            if len(parts) > len(self.field_names):
                parts = parts[-len(self.field_names):]
            for k, v in zip(self.field_names, parts):
                out[k] = v
        for k, t in self.field_types.items():
            if k in out and t is not None:
                try:
                    out[k] = t(out[k])
                except (TypeError, ValueError):
                    raise ValueError(f"partition value {out[k]!r} of {k!r} in {path!r} is not a {t.__name__}") from None
        return out
