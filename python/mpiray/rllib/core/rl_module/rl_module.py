"""``RLModule`` and ``RLModuleSpec`` (Ray's ``ray.rllib.core.rl_module.rl_module``).

mpiray's RLModules are torch modules (``TorchRLModule`` is the same class). A module maps a
batch dict (``{"obs": tensor}``) to the inputs of its action distribution:
``forward_inference`` (greedy acting), ``forward_exploration`` (sampling on env runners) and
``forward_train`` (the learner's loss). Subclass and implement ``setup()`` and ``_forward``
(or the three ``_forward_*``), as in Ray.
"""

import json
import os
import pickle
from dataclasses import dataclass, field, asdict, is_dataclass
from typing import Any, Optional, Type

import cloudpickle
import numpy as np
import torch
from torch import nn

from ..columns import Columns
from ..distribution import dist_class_for

_METADATA = {"class_and_ctor_args_file": "class_and_ctor_args.pkl", "state_file": "module_state",
             "ray_version": "2.60.0", "checkpoint_version": "2.1", "framework": "mpiray"}


def model_config_dict(model_config):
    """A plain dict of a ``DefaultModelConfig`` or a dict (None: {})."""
    if model_config is None:
        return {}
    if is_dataclass(model_config):
        return asdict(model_config)
    if isinstance(model_config, dict):
        return dict(model_config)
    raise TypeError(f"model_config must be a DefaultModelConfig or a dict, got {type(model_config).__name__}")


class RLModule(nn.Module):
    """The base class of torch RLModules (Ray's ``TorchRLModule``)."""

    framework = "torch"

    def __init__(self, *, observation_space=None, action_space=None, inference_only=False,
                 learner_only=False, model_config=None, catalog_class=None, **kwargs):
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.inference_only = inference_only
        self.learner_only = learner_only
        self.model_config = model_config_dict(model_config)
        self._ctor_kwargs = dict(observation_space=observation_space, action_space=action_space,
                                 inference_only=inference_only, learner_only=learner_only,
                                 model_config=self.model_config)
        self.setup()

    # ---------------------------------------------------------------- to override
    def setup(self):
        pass

    def _forward(self, batch, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement _forward (or _forward_inference, "
                                  "_forward_exploration and _forward_train)")

    def _forward_inference(self, batch, **kwargs):
        return self._forward(batch, **kwargs)

    def _forward_exploration(self, batch, **kwargs):
        return self._forward(batch, **kwargs)

    def _forward_train(self, batch, **kwargs):
        return self._forward(batch, **kwargs)

    # ---------------------------------------------------------------- public
    def forward_inference(self, batch, **kwargs):
        """Outputs for acting greedily (no gradients)."""
        with torch.no_grad():
            return self._forward_inference(batch, **kwargs)

    def forward_exploration(self, batch, **kwargs):
        """Outputs for acting while exploring (no gradients)."""
        with torch.no_grad():
            return self._forward_exploration(batch, **kwargs)

    def forward_train(self, batch, **kwargs):
        """Outputs for the loss (with gradients)."""
        return self._forward_train(batch, **kwargs)

    def forward(self, batch, **kwargs):
        return self.forward_train(batch, **kwargs)

    def get_inference_action_dist_cls(self):
        return dist_class_for(self.action_space)

    def get_exploration_action_dist_cls(self):
        return dist_class_for(self.action_space)

    def get_train_action_dist_cls(self):
        return dist_class_for(self.action_space)

    def is_stateful(self):
        return False

    def unwrapped(self):
        return self

    # ---------------------------------------------------------------- state
    def _tensors(self):
        """(name, tensor) of every parameter and buffer, as ``state_dict`` names them (cached:
        walking the module tree costs more than copying a small net's weights)."""
        cache = self.__dict__.get("_tensor_cache")
        if cache is None or cache[0] != len(self._modules):
            items = list(self.state_dict(keep_vars=True).items())
            cache = (len(self._modules), items)
            self.__dict__["_tensor_cache"] = cache
        return cache[1]

    def _invalidate_tensor_cache(self):
        self.__dict__.pop("_tensor_cache", None)

    def get_state(self, components=None, *, not_components=None, inference_only=False, **kwargs):
        """The parameters and buffers as numpy arrays (a copy)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self._tensors()}

    def set_state(self, state):
        """Load ``get_state()``'s dict (numpy arrays or tensors)."""
        own = self._tensors()
        missing = [k for k, _ in own if k not in state]
        if missing:
            raise ValueError(f"{type(self).__name__}.set_state: the state lacks {missing[:5]} "
                             f"(it holds {list(state)[:5]}...): it belongs to another module")
        with torch.no_grad():
            for k, t in own:
                v = state[k]
                if tuple(v.shape) != tuple(t.shape):
                    raise ValueError(f"{type(self).__name__}.set_state: {k} has shape {tuple(v.shape)} in the "
                                     f"state but {tuple(t.shape)} in this module (observation or action "
                                     f"spaces, or model_config, differ)")
                if isinstance(v, torch.Tensor):
                    t.copy_(v)
                else:
                    t.copy_(torch.from_numpy(np.array(v, copy=True)))

    def get_ctor_args_and_kwargs(self):
        return (), dict(self._ctor_kwargs)

    def save_to_path(self, path=None):
        """Write the module as RLlib lays it out: ``module_state.pkl``,
        ``class_and_ctor_args.pkl``, ``metadata.json``. Returns the path."""
        import tempfile
        path = os.path.abspath(path or tempfile.mkdtemp(prefix="rl_module_"))
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "module_state.pkl"), "wb") as f:
            pickle.dump(self.get_state(), f)
        with open(os.path.join(path, "class_and_ctor_args.pkl"), "wb") as f:
            cloudpickle.dump({"class": type(self), "ctor_args_and_kwargs": self.get_ctor_args_and_kwargs()}, f)
        with open(os.path.join(path, "metadata.json"), "w") as f:
            json.dump(_METADATA, f)
        return path

    def restore_from_path(self, path):
        with open(os.path.join(path, "module_state.pkl"), "rb") as f:
            self.set_state(pickle.load(f))

    @classmethod
    def from_checkpoint(cls, path):
        """Rebuild a module saved by ``save_to_path`` (also a module directory inside an
        algorithm checkpoint: ``<ckpt>/learner_group/learner/rl_module/default_policy``)."""
        path = os.fspath(path)
        f = os.path.join(path, "class_and_ctor_args.pkl")
        if not os.path.exists(f):
            raise FileNotFoundError(f"{path} is not an RLModule checkpoint (no class_and_ctor_args.pkl)")
        with open(f, "rb") as fh:
            info = pickle.load(fh)
        args, kwargs = info["ctor_args_and_kwargs"]
        module = info["class"](*args, **kwargs)
        module.restore_from_path(path)
        return module


TorchRLModule = RLModule


@dataclass
class RLModuleSpec:
    """How to build one RLModule: ``module_class`` (None: the algorithm's default),
    ``observation_space``/``action_space`` (None: the env's), ``model_config``."""

    module_class: Optional[Type[RLModule]] = None
    observation_space: Any = None
    action_space: Any = None
    inference_only: bool = False
    learner_only: bool = False
    model_config: Any = None
    catalog_class: Any = None
    load_state_path: Optional[str] = None

    def build(self):
        if self.module_class is None:
            raise ValueError("RLModuleSpec.build() needs a module_class")
        if self.observation_space is None or self.action_space is None:
            raise ValueError("RLModuleSpec.build() needs observation_space and action_space")
        m = self.module_class(observation_space=self.observation_space, action_space=self.action_space,
                              inference_only=self.inference_only, learner_only=self.learner_only,
                              model_config=self.model_config)
        if self.load_state_path:
            m.restore_from_path(self.load_state_path)
        return m

    def update(self, other, override=True):
        for k in ("module_class", "observation_space", "action_space", "model_config", "catalog_class",
                  "load_state_path"):
            v = getattr(other, k)
            if v is not None and (override or getattr(self, k) is None):
                setattr(self, k, v)
        return self


class MultiRLModule(nn.Module):
    """Several RLModules by module id (Ray's ``MultiRLModule``)."""

    def __init__(self, rl_modules=None, **kwargs):
        super().__init__()
        self._rl_modules = nn.ModuleDict(rl_modules or {})

    def __getitem__(self, module_id):
        if module_id not in self._rl_modules:
            raise KeyError(f"no module {module_id!r}; this MultiRLModule has {list(self._rl_modules)}")
        return self._rl_modules[module_id]

    def __contains__(self, module_id):
        return module_id in self._rl_modules

    def __len__(self):
        return len(self._rl_modules)

    def keys(self):
        return list(self._rl_modules.keys())

    def items(self):
        return list(self._rl_modules.items())

    def values(self):
        return list(self._rl_modules.values())

    def add_module(self, module_id, module, *, override=False):  # noqa: D401 - Ray's name
        if module_id in self._rl_modules and not override:
            raise ValueError(f"module {module_id!r} exists (override=True replaces it)")
        self._rl_modules[module_id] = module

    def remove_module(self, module_id):
        del self._rl_modules[module_id]

    def foreach_module(self, fn):
        return [fn(mid, m) for mid, m in self._rl_modules.items()]

    def forward_inference(self, batch, **kwargs):
        return {mid: self[mid].forward_inference(b, **kwargs) for mid, b in batch.items()}

    def forward_exploration(self, batch, **kwargs):
        return {mid: self[mid].forward_exploration(b, **kwargs) for mid, b in batch.items()}

    def forward_train(self, batch, **kwargs):
        return {mid: self[mid].forward_train(b, **kwargs) for mid, b in batch.items()}

    def get_state(self, *args, **kwargs):
        return {mid: m.get_state() for mid, m in self._rl_modules.items()}

    def set_state(self, state):
        for mid, s in state.items():
            if mid in self._rl_modules:
                self._rl_modules[mid].set_state(s)


@dataclass
class MultiRLModuleSpec:
    """Specs of several modules by module id (Ray's ``MultiRLModuleSpec``)."""

    multi_rl_module_class: Type = MultiRLModule
    rl_module_specs: Any = field(default_factory=dict)
    observation_space: Any = None
    action_space: Any = None
    inference_only: bool = False
    model_config: Any = None
    load_state_path: Optional[str] = None

    def build(self, module_id=None):
        if module_id is not None:
            return self.rl_module_specs[module_id].build()
        return self.multi_rl_module_class({mid: s.build() for mid, s in self.rl_module_specs.items()})
