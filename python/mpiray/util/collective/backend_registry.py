"""The registry of collective backends (Ray's ``ray.util.collective.backend_registry``)."""

from typing import Dict, Type

from .collective_group.base_collective_group import BaseGroup


class BackendRegistry:
    _instance = None
    _map: Dict[str, Type[BaseGroup]]

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
            cls._instance._map = {}
        return cls._instance

    def put(self, name: str, group_cls: Type[BaseGroup]) -> None:
        if not (isinstance(group_cls, type) and issubclass(group_cls, BaseGroup)):
            raise TypeError(f"{group_cls} is not a subclass of BaseGroup")
        if name.upper() in self._map:
            raise ValueError(f"Backend {name.upper()} already registered")
        self._map[name.upper()] = group_cls

    def get(self, name: str) -> Type[BaseGroup]:
        key = name.upper()
        if key not in self._map:
            raise ValueError(f"Unrecognized backend: '{name}'. The backends are "
                             f"{sorted(n.lower() for n in self._map)}")
        return self._map[key]

    def names(self):
        return list(self._map)

    def is_registered(self, name: str) -> bool:
        return name.upper() in self._map

    def check(self, name: str) -> bool:
        """Registered and available."""
        try:
            return self.get(name).check_backend_availability()
        except (ValueError, AttributeError):
            return False


_global_registry = BackendRegistry()


def register_collective_backend(name: str, group_cls: Type[BaseGroup]):
    """Register a custom backend class (a ``BaseGroup`` subclass) under ``name``; as in Ray,
    register it on the driver and in every actor that joins such a group."""
    _global_registry.put(name, group_cls)
    from . import types

    if not hasattr(types.Backend, name.upper()):
        setattr(types.Backend, name.upper(), name.upper())
