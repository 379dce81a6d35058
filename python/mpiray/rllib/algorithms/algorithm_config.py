"""``AlgorithmConfig`` (Ray's ``ray.rllib.algorithms.algorithm_config``): the builder users
configure algorithms with.

    config = (PPOConfig()
              .environment("CartPole-v1")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=16)
              .training(lr=3e-4, train_batch_size_per_learner=4000, minibatch_size=128)
              .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64])))
    algo = config.build_algo()

Every builder method takes Ray 2.60's keyword names; an unknown one is a ``ValueError`` that
lists the valid ones (and the nearest match). ``to_dict()``/``from_dict()`` give the flat dict
Tune's ``param_space`` uses (``"lambda"`` for ``lambda_``, as Ray).
"""

import copy
import difflib
import math
import warnings
from dataclasses import asdict, is_dataclass

from ..core import DEFAULT_MODULE_ID
from ..core.rl_module.default_model_config import DefaultModelConfig
from ..core.rl_module.rl_module import MultiRLModuleSpec, RLModuleSpec, model_config_dict
from ..policy.policy import PolicySpec


class _NotProvided:
    def __repr__(self):
        return "NotProvided"


NotProvided = _NotProvided()


def _default_policy_mapping_fn(agent_id, episode=None, **kwargs):
    return DEFAULT_MODULE_ID


# builder method -> {keyword: attribute}; every attribute also is a key of to_dict()
_BASE_OPTIONS = {
    "environment": ["env", "env_config", "observation_space", "action_space", "render_env", "clip_rewards",
                    "normalize_actions", "clip_actions", "disable_env_checking", "is_atari",
                    "action_mask_key", "env_task_fn"],
    "framework": ["framework", "eager_tracing", "eager_max_retraces", "tf_session_args",
                  "local_tf_session_args", "torch_compile_learner", "torch_compile_learner_what_to_compile",
                  "torch_compile_learner_dynamo_backend", "torch_compile_learner_dynamo_mode",
                  "torch_compile_worker", "torch_compile_worker_dynamo_backend",
                  "torch_compile_worker_dynamo_mode", "torch_ddp_kwargs", "torch_skip_nan_gradients"],
    "api_stack": ["enable_rl_module_and_learner", "enable_env_runner_and_connector_v2"],
    "env_runners": ["env_runner_cls", "num_env_runners", "create_local_env_runner", "create_env_on_local_worker",
                    "num_envs_per_env_runner", "gym_env_vectorize_mode", "num_cpus_per_env_runner",
                    "num_gpus_per_env_runner", "custom_resources_per_env_runner", "validate_env_runners_after_construction",
                    "sample_timeout_s", "max_requests_in_flight_per_env_runner", "env_to_module_connector",
                    "module_to_env_connector", "add_default_connectors_to_env_to_module_pipeline",
                    "add_default_connectors_to_module_to_env_pipeline", "episode_lookback_horizon",
                    "merge_env_runner_states", "broadcast_env_runner_states", "compress_observations",
                    "rollout_fragment_length", "batch_mode", "explore", "episodes_to_numpy",
                    "use_worker_filter_stats", "update_worker_filter_stats", "observation_filter",
                    "kokkos_vector_env"],
    "learners": ["num_learners", "num_cpus_per_learner", "num_gpus_per_learner",
                 "num_aggregator_actors_per_learner", "max_requests_in_flight_per_aggregator_actor",
                 "local_gpu_idx", "max_requests_in_flight_per_learner", "learner_collective_backend"],
    "training": ["gamma", "lr", "grad_clip", "grad_clip_by", "train_batch_size", "train_batch_size_per_learner",
                 "num_epochs", "minibatch_size", "shuffle_batch_per_epoch", "model", "optimizer",
                 "learner_class", "learner_connector", "add_default_connectors_to_learner_pipeline",
                 "learner_config_dict"],
    "rl_module": ["model_config", "rl_module_spec", "algorithm_config_overrides_per_module"],
    "evaluation": ["evaluation_interval", "evaluation_duration", "evaluation_duration_unit",
                   "evaluation_auto_duration_min_env_steps_per_sample",
                   "evaluation_auto_duration_max_env_steps_per_sample", "evaluation_sample_timeout_s",
                   "evaluation_parallel_to_training", "evaluation_force_reset_envs_before_iteration",
                   "evaluation_config", "off_policy_estimation_methods", "ope_split_batch_by_episode",
                   "evaluation_num_env_runners", "custom_evaluation_function"],
    "multi_agent": ["policies", "policy_map_capacity", "policy_mapping_fn", "policies_to_train",
                    "policy_states_are_swappable", "observation_fn", "count_steps_by"],
    "reporting": ["keep_per_episode_custom_metrics", "metrics_episode_collection_timeout_s",
                  "metrics_num_episodes_for_smoothing", "min_time_s_per_iteration",
                  "min_train_timesteps_per_iteration", "min_sample_timesteps_per_iteration", "log_gradients"],
    "checkpointing": ["export_native_model_files", "checkpoint_trainable_policies_only"],
    "debugging": ["logger_creator", "logger_config", "log_level", "log_sys_usage", "fake_sampler", "seed"],
    "fault_tolerance": ["restart_failed_env_runners", "ignore_env_runner_failures", "max_num_env_runner_restarts",
                        "delay_between_env_runner_restarts_s", "restart_failed_sub_environments",
                        "num_consecutive_env_runner_failures_tolerance", "env_runner_health_probe_timeout_s",
                        "env_runner_restore_timeout_s"],
    "resources": ["num_cpus_for_main_process", "num_gpus", "_fake_gpus", "placement_strategy"],
    "callbacks": ["callbacks_class", "on_algorithm_init", "on_train_result", "on_evaluate_start",
                  "on_evaluate_end", "on_checkpoint_loaded", "on_env_runners_recreated"],
}

# keyword -> attribute where they differ
_ATTR = {"framework": "framework_str", "model_config": "_model_config", "rl_module_spec": "_rl_module_spec",
         "train_batch_size_per_learner": "_train_batch_size_per_learner", "callbacks_class": "callbacks_class"}
# to_dict() keys that differ from the attribute
_DICT_KEY = {"lambda_": "lambda", "framework_str": "framework", "_model_config": "model_config",
             "_rl_module_spec": "rl_module_spec", "_train_batch_size_per_learner": "train_batch_size_per_learner"}
_FROM_DICT_KEY = {v: k for k, v in _DICT_KEY.items()}


class AlgorithmConfig:
    """Base configuration of every algorithm (Ray's defaults)."""

    # algorithm-specific builder options; subclasses extend this
    _EXTRA_OPTIONS = {}

    def __init__(self, algo_class=None):
        self.algo_class = algo_class
        # environment
        self.env = None
        self.env_config = {}
        self.observation_space = None
        self.action_space = None
        self.render_env = False
        self.clip_rewards = None
        self.normalize_actions = True
        self.clip_actions = False
        self.disable_env_checking = False
        self.is_atari = None
        self.action_mask_key = "action_mask"
        self.env_task_fn = None
        # framework
        self.framework_str = "torch"
        self.eager_tracing = True
        self.eager_max_retraces = 20
        self.tf_session_args = {}
        self.local_tf_session_args = {}
        self.torch_compile_learner = False
        self.torch_compile_learner_what_to_compile = "forward_train"
        self.torch_compile_learner_dynamo_backend = "inductor"
        self.torch_compile_learner_dynamo_mode = None
        self.torch_compile_worker = False
        self.torch_compile_worker_dynamo_backend = "onnxrt"
        self.torch_compile_worker_dynamo_mode = None
        self.torch_ddp_kwargs = {}
        self.torch_skip_nan_gradients = False
        # api stack
        self.enable_rl_module_and_learner = True
        self.enable_env_runner_and_connector_v2 = True
        # env runners
        self.env_runner_cls = None
        self.num_env_runners = 0
        self.create_local_env_runner = True
        self.create_env_on_local_worker = False
        self.num_envs_per_env_runner = 1
        self.gym_env_vectorize_mode = "sync"
        self.num_cpus_per_env_runner = 1
        self.num_gpus_per_env_runner = 0
        self.custom_resources_per_env_runner = {}
        self.validate_env_runners_after_construction = True
        self.sample_timeout_s = 60.0
        self.max_requests_in_flight_per_env_runner = 1
        self.env_to_module_connector = None
        self.module_to_env_connector = None
        self.add_default_connectors_to_env_to_module_pipeline = True
        self.add_default_connectors_to_module_to_env_pipeline = True
        self.episode_lookback_horizon = 1
        self.merge_env_runner_states = "training_only"
        self.broadcast_env_runner_states = True
        self.compress_observations = False
        self.rollout_fragment_length = 200
        self.batch_mode = "truncate_episodes"
        self.explore = True
        self.episodes_to_numpy = True
        self.use_worker_filter_stats = True
        self.update_worker_filter_stats = True
        self.observation_filter = "NoFilter"
        self.kokkos_vector_env = True
        # learners
        self.num_learners = 0
        self.num_cpus_per_learner = "auto"
        self.num_gpus_per_learner = 0
        self.num_aggregator_actors_per_learner = 0
        self.max_requests_in_flight_per_aggregator_actor = 3
        self.local_gpu_idx = 0
        self.max_requests_in_flight_per_learner = 3
        self.learner_collective_backend = "auto"
        # training
        self.gamma = 0.99
        self.lr = 0.001
        self.grad_clip = None
        self.grad_clip_by = "global_norm"
        self.train_batch_size = 32
        self._train_batch_size_per_learner = None
        self.num_epochs = 1
        self.minibatch_size = None
        self.shuffle_batch_per_epoch = False
        self.model = {}
        self.optimizer = {}
        self.learner_class = None
        self.learner_connector = None
        self.add_default_connectors_to_learner_pipeline = True
        self.learner_config_dict = {}
        # rl module
        self._model_config = {}
        self._rl_module_spec = None
        self.algorithm_config_overrides_per_module = {}
        # evaluation
        self.evaluation_interval = None
        self.evaluation_duration = 10
        self.evaluation_duration_unit = "episodes"
        self.evaluation_auto_duration_min_env_steps_per_sample = 100
        self.evaluation_auto_duration_max_env_steps_per_sample = 2000
        self.evaluation_sample_timeout_s = 120.0
        self.evaluation_parallel_to_training = False
        self.evaluation_force_reset_envs_before_iteration = True
        self.evaluation_config = None
        self.off_policy_estimation_methods = {}
        self.ope_split_batch_by_episode = True
        self.evaluation_num_env_runners = 0
        self.custom_evaluation_function = None
        # multi agent
        self.policies = {DEFAULT_MODULE_ID: None}
        self.policy_map_capacity = 100
        self.policy_mapping_fn = _default_policy_mapping_fn
        self.policies_to_train = None
        self.policy_states_are_swappable = False
        self.observation_fn = None
        self.count_steps_by = "env_steps"
        self._is_multi_agent = False
        # reporting
        self.keep_per_episode_custom_metrics = False
        self.metrics_episode_collection_timeout_s = 60.0
        self.metrics_num_episodes_for_smoothing = 100
        self.min_time_s_per_iteration = None
        self.min_train_timesteps_per_iteration = 0
        self.min_sample_timesteps_per_iteration = 0
        self.log_gradients = True
        # checkpointing
        self.export_native_model_files = False
        self.checkpoint_trainable_policies_only = False
        # debugging
        self.logger_creator = None
        self.logger_config = None
        self.log_level = "WARN"
        self.log_sys_usage = True
        self.fake_sampler = False
        self.seed = None
        # fault tolerance
        self.restart_failed_env_runners = True
        self.ignore_env_runner_failures = False
        self.max_num_env_runner_restarts = 1000
        self.delay_between_env_runner_restarts_s = 60.0
        self.restart_failed_sub_environments = False
        self.num_consecutive_env_runner_failures_tolerance = 100
        self.env_runner_health_probe_timeout_s = 30.0
        self.env_runner_restore_timeout_s = 1800.0
        # resources
        self.num_cpus_for_main_process = 1
        self.num_gpus = 0
        self._fake_gpus = False
        self.placement_strategy = "PACK"
        # callbacks
        self.callbacks_class = None
        self.on_algorithm_init = None
        self.on_train_result = None
        self.on_evaluate_start = None
        self.on_evaluate_end = None
        self.on_checkpoint_loaded = None
        self.on_env_runners_recreated = None
        # resolved at build time (driver side)
        self._env_spec = None
        self._numpy_inference = True
        self._in_tune_trial = False

    # ------------------------------------------------------------------ option tables
    @classmethod
    def _options(cls, method):
        opts = list(_BASE_OPTIONS.get(method, []))
        for klass in reversed(cls.__mro__):
            opts += [o for o in getattr(klass, "_EXTRA_OPTIONS", {}).get(method, []) if o not in opts]
        return opts

    @classmethod
    def _all_attrs(cls):
        names = []
        for method in list(_BASE_OPTIONS) + [m for k in cls.__mro__ for m in getattr(k, "_EXTRA_OPTIONS", {})]:
            for kw in cls._options(method):
                a = _ATTR.get(kw, kw)
                if a not in names:
                    names.append(a)
        return names

    def _set(self, method, kwargs):
        valid = self._options(method)
        unknown = [k for k, v in kwargs.items() if k not in valid and v is not NotProvided]
        if unknown:
            hints = {k: difflib.get_close_matches(k, valid, n=1) for k in unknown}
            hint = "; ".join(f"{k!r}: did you mean {h[0]!r}?" for k, h in hints.items() if h)
            raise ValueError(f"{type(self).__name__}.{method}() got unknown option(s) {unknown}"
                             + (f" ({hint})" if hint else "") + f". Valid options: {', '.join(valid)}")
        for k, v in kwargs.items():
            if v is NotProvided:
                continue
            setattr(self, _ATTR.get(k, k), v)
        return self

    # ------------------------------------------------------------------ builder methods
    def environment(self, env=NotProvided, **kwargs):
        """``env`` (Gymnasium id, ``tune.register_env`` name, or env class), ``env_config``,
        ``observation_space``, ``action_space``, ``normalize_actions``, ``clip_actions``, ..."""
        if env is not NotProvided:
            kwargs["env"] = env
        return self._set("environment", kwargs)

    def framework(self, framework=NotProvided, **kwargs):
        """Only ``"torch"``."""
        if framework is not NotProvided:
            if framework != "torch":
                raise ValueError(f"framework {framework!r} is not supported: mpiray.rllib's modules and "
                                 "learners are torch (framework='torch')")
            kwargs["framework"] = framework
        return self._set("framework", kwargs)

    def api_stack(self, enable_rl_module_and_learner=NotProvided, enable_env_runner_and_connector_v2=NotProvided):
        """RLlib's new API stack is the only one: False raises."""
        for name, v in (("enable_rl_module_and_learner", enable_rl_module_and_learner),
                        ("enable_env_runner_and_connector_v2", enable_env_runner_and_connector_v2)):
            if v is not NotProvided and not v:
                raise ValueError(f"api_stack({name}=False): mpiray.rllib implements RLlib's new API stack only")
        return self

    def env_runners(self, **kwargs):
        """``num_env_runners``, ``num_envs_per_env_runner``, ``rollout_fragment_length``,
        ``num_cpus_per_env_runner``, ``explore``, ``sample_timeout_s``, ... and mpiray's
        ``kokkos_vector_env`` (default True: the Kokkos batched env for CartPole-v1, Pendulum-v1,
        MountainCar-v0, MountainCarContinuous-v0, Acrobot-v1 when ``num_envs_per_env_runner > 1``)."""
        return self._set("env_runners", kwargs)

    def learners(self, **kwargs):
        """``num_learners`` (0: the learner runs in the algorithm's process), ``num_gpus_per_learner``,
        ``num_cpus_per_learner``, and mpiray's ``learner_collective_backend`` ("auto", "mpiray"
        (mpiray.util.collective), "torch" (torch.distributed gloo/NCCL))."""
        return self._set("learners", kwargs)

    def training(self, **kwargs):
        """``lr``, ``gamma``, ``train_batch_size_per_learner``, ``minibatch_size``,
        ``num_epochs``, ``grad_clip`` and the algorithm's own options."""
        if "lambda" in kwargs:
            kwargs["lambda_"] = kwargs.pop("lambda")
        return self._set("training", kwargs)

    def rl_module(self, **kwargs):
        """``model_config`` (a ``DefaultModelConfig`` or a dict), ``rl_module_spec``."""
        mc = kwargs.get("model_config", NotProvided)
        if mc is not NotProvided and mc is not None and not (is_dataclass(mc) or isinstance(mc, dict)):
            raise ValueError(f"rl_module(model_config=...) must be a DefaultModelConfig or a dict, got {type(mc).__name__}")
        if isinstance(mc, dict):
            known = set(DefaultModelConfig.__dataclass_fields__)
            extra = set(self._model_config_extras())
            unknown = [k for k in mc if k not in known and k not in extra]
            if unknown and self._rl_module_spec is None and "rl_module_spec" not in kwargs:
                raise ValueError(f"rl_module(model_config=...) got unknown key(s) {unknown} for the default "
                                 f"modules. Valid keys: {', '.join(sorted(known | extra))}")
        return self._set("rl_module", kwargs)

    def evaluation(self, **kwargs):
        return self._set("evaluation", kwargs)

    def multi_agent(self, **kwargs):
        """``policies`` (ids, or a dict of id -> ``PolicySpec``/None), ``policy_mapping_fn(agent_id,
        episode)``, ``policies_to_train``."""
        out = self._set("multi_agent", kwargs)
        if "policies" in kwargs and kwargs["policies"] is not NotProvided:
            p = kwargs["policies"]
            if isinstance(p, (set, list, tuple)):
                p = {pid: None for pid in p}
            elif isinstance(p, dict):
                p = {k: (PolicySpec(*v) if isinstance(v, tuple) else v) for k, v in p.items()}
            else:
                raise ValueError(f"multi_agent(policies=...) must be a set/list of ids or a dict, got {type(p).__name__}")
            if not p:
                raise ValueError("multi_agent(policies=...) is empty")
            self.policies = p
            self._is_multi_agent = set(p) != {DEFAULT_MODULE_ID} or self._is_multi_agent
        fn = kwargs.get("policy_mapping_fn", NotProvided)
        if fn not in (NotProvided, None) and getattr(fn, "__qualname__", None) != "_default_policy_mapping_fn":
            self._is_multi_agent = True
        return out

    def reporting(self, **kwargs):
        return self._set("reporting", kwargs)

    def checkpointing(self, **kwargs):
        return self._set("checkpointing", kwargs)

    def debugging(self, **kwargs):
        return self._set("debugging", kwargs)

    def fault_tolerance(self, **kwargs):
        return self._set("fault_tolerance", kwargs)

    def resources(self, **kwargs):
        return self._set("resources", kwargs)

    def callbacks(self, callbacks_class=NotProvided, **kwargs):
        if callbacks_class is not NotProvided:
            kwargs["callbacks_class"] = callbacks_class
        return self._set("callbacks", kwargs)

    def python_environment(self, **kwargs):
        return self

    # ------------------------------------------------------------------ derived values
    @property
    def model_config(self):
        """The default modules' model config as a dict (the algorithm's defaults, then the user's)."""
        d = model_config_dict(DefaultModelConfig())
        d.update(self._model_config_defaults())
        d.update(model_config_dict(self._model_config))
        if self.model:
            d.update({k: v for k, v in self.model.items() if k in d})
        return d

    def _model_config_defaults(self):
        return {}

    def _model_config_extras(self):
        return []

    @property
    def rl_module_spec(self):
        return self._rl_module_spec

    @property
    def train_batch_size_per_learner(self):
        if self._train_batch_size_per_learner is not None:
            return self._train_batch_size_per_learner
        return self.train_batch_size // max(1, self.num_learners)

    @property
    def total_train_batch_size(self):
        return self.train_batch_size_per_learner * max(1, self.num_learners)

    @property
    def is_multi_agent(self):
        return self._is_multi_agent

    @property
    def num_workers(self):  # old name
        return self.num_env_runners

    def get_rollout_fragment_length(self, worker_index=0):
        if self.rollout_fragment_length == "auto":
            return max(1, math.ceil(self.total_train_batch_size /
                                    (self.num_envs_per_env_runner * max(1, self.num_env_runners))))
        return int(self.rollout_fragment_length)

    def _exploration_mode(self):
        return "stochastic"

    def _default_module_class(self):
        from ..core.rl_module.torch.default_modules import DefaultActorCriticRLModule
        return DefaultActorCriticRLModule

    def get_default_rl_module_spec(self):
        return RLModuleSpec(module_class=self._default_module_class(), model_config=self.model_config)

    def _module_ids(self):
        return list(self.policies)

    def _policy_specs(self):
        return dict(self.policies)

    def get_config_for_module(self, module_id):
        """This config with the module's overrides (``algorithm_config_overrides_per_module``
        and its PolicySpec's ``config``) applied."""
        over = dict(self.algorithm_config_overrides_per_module.get(module_id, {}) or {})
        spec = self.policies.get(module_id) if isinstance(self.policies, dict) else None
        if isinstance(spec, PolicySpec) and spec.config:
            over.update(spec.config)
        if not over:
            return self
        c = copy.copy(self)
        c._set("training", {k: v for k, v in over.items() if k in self._options("training")})
        return c

    def get_rl_module_spec(self, module_id=DEFAULT_MODULE_ID, observation_space=None, action_space=None,
                           inference_only=False):
        """The spec of module ``module_id`` with the env's spaces filled in."""
        user = self._rl_module_spec
        if isinstance(user, MultiRLModuleSpec):
            user = user.rl_module_specs.get(module_id)
        spec = self.get_default_rl_module_spec()
        mc = dict(spec.model_config or {})
        pspec = self.policies.get(module_id) if isinstance(self.policies, dict) else None
        if isinstance(pspec, PolicySpec) and pspec.config and pspec.config.get("model_config"):
            mc.update(model_config_dict(pspec.config["model_config"]))
        spec.model_config = mc
        if user is not None:
            spec = RLModuleSpec(module_class=user.module_class or spec.module_class,
                                observation_space=user.observation_space, action_space=user.action_space,
                                model_config=(model_config_dict(user.model_config) if user.model_config is not None
                                              else spec.model_config),
                                catalog_class=user.catalog_class, load_state_path=user.load_state_path)
        spec = copy.copy(spec)
        if spec.observation_space is None:
            spec.observation_space = observation_space
        if spec.action_space is None:
            spec.action_space = action_space
        spec.inference_only = inference_only
        return spec

    def _check_spaces(self, module_id, observation_space, action_space, env_name):
        """A ValueError when spaces declared in the config or module spec differ from the env's."""
        declared = []
        if not self._is_multi_agent:
            declared.append(("config.environment(observation_space=...)", self.observation_space,
                             "config.environment(action_space=...)", self.action_space))
        user = self._rl_module_spec
        if isinstance(user, MultiRLModuleSpec):
            user = user.rl_module_specs.get(module_id)
        if user is not None:
            declared.append((f"the RLModuleSpec of {module_id!r} (observation_space)", user.observation_space,
                             f"the RLModuleSpec of {module_id!r} (action_space)", user.action_space))
        for oname, osp, aname, asp in declared:
            if osp is not None and not _same_space(osp, observation_space):
                raise ValueError(f"The observation space of env {env_name!r} is {observation_space}, but {oname} "
                                 f"says {osp}: the env's spaces do not match the model")
            if asp is not None and not _same_space(asp, action_space):
                raise ValueError(f"The action space of env {env_name!r} is {action_space}, but {aname} "
                                 f"says {asp}: the env's spaces do not match the model")

    # ------------------------------------------------------------------ dicts and copies
    def to_dict(self):
        """A flat dict of every option (Ray's keys; ``"lambda"`` for ``lambda_``)."""
        d = {}
        for a in self._all_attrs():
            v = getattr(self, a)
            if a == "_model_config" and is_dataclass(v):
                v = asdict(v)
            d[_DICT_KEY.get(a, a)] = v
        d["class"] = type(self)
        return d

    def update_from_dict(self, config_dict):
        """Set options from a flat (or Ray-nested) dict; unknown keys raise listing the valid ones."""
        attrs = set(self._all_attrs())
        ignore = {"class", "_is_multi_agent", "algo_class"}
        unknown = []
        for k, v in dict(config_dict).items():
            if k in ignore:
                continue
            a = _FROM_DICT_KEY.get(k, _ATTR.get(k, k))
            if a not in attrs:
                unknown.append(k)
                continue
            if a == "_model_config" and isinstance(v, dict):
                known = set(DefaultModelConfig.__dataclass_fields__)
                if set(v) <= known:
                    v = DefaultModelConfig(**v)
            if a == "policies":
                self.multi_agent(policies=v)
                continue
            if a == "policy_mapping_fn":
                self.multi_agent(policy_mapping_fn=v)
                continue
            if a == "framework_str" and v != "torch":
                raise ValueError(f"framework {v!r} is not supported (torch only)")
            setattr(self, a, v)
        if unknown:
            valid = sorted(_DICT_KEY.get(a, a) for a in attrs)
            hints = {k: difflib.get_close_matches(k, valid, n=1) for k in unknown}
            hint = "; ".join(f"{k!r}: did you mean {h[0]!r}?" for k, h in hints.items() if h)
            raise ValueError(f"{type(self).__name__} got unknown option(s) {sorted(unknown)}"
                             + (f" ({hint})" if hint else "") + f". Valid options: {', '.join(valid)}")
        return self

    @classmethod
    def from_dict(cls, config_dict):
        c = config_dict.get("class") if isinstance(config_dict, dict) else None
        klass = c if isinstance(c, type) and issubclass(c, AlgorithmConfig) else cls
        return klass().update_from_dict(config_dict)

    def copy(self, copy_frozen=None):
        return copy.deepcopy(self)

    def freeze(self):
        return self

    def get(self, key, default=None):
        a = _FROM_DICT_KEY.get(key, _ATTR.get(key, key))
        return getattr(self, a, default)

    def __getitem__(self, key):
        a = _FROM_DICT_KEY.get(key, _ATTR.get(key, key))
        if not hasattr(self, a):
            raise KeyError(key)
        return getattr(self, a)

    def __contains__(self, key):
        return hasattr(self, _FROM_DICT_KEY.get(key, _ATTR.get(key, key)))

    def keys(self):
        return self.to_dict().keys()

    def items(self):
        return self.to_dict().items()

    def __repr__(self):
        return f"{type(self).__name__}(env={self.env!r}, num_env_runners={self.num_env_runners}, lr={self.lr})"

    # ------------------------------------------------------------------ validation and build
    def validate(self):
        """Raise ValueError on values that cannot work."""
        def bad(msg):
            raise ValueError(f"{type(self).__name__}: {msg}")
        if self.framework_str != "torch":
            bad(f"framework {self.framework_str!r} is not supported (torch only)")
        for name in ("num_env_runners", "num_learners", "evaluation_num_env_runners"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                bad(f"{name} must be an int >= 0, got {v!r}")
        if not isinstance(self.num_envs_per_env_runner, int) or self.num_envs_per_env_runner < 1:
            bad(f"num_envs_per_env_runner must be an int >= 1, got {self.num_envs_per_env_runner!r}")
        if self.rollout_fragment_length != "auto" and (not isinstance(self.rollout_fragment_length, int)
                                                        or self.rollout_fragment_length < 1):
            bad(f"rollout_fragment_length must be 'auto' or an int >= 1, got {self.rollout_fragment_length!r}")
        if self.batch_mode not in ("truncate_episodes", "complete_episodes"):
            bad(f"batch_mode must be 'truncate_episodes' or 'complete_episodes', got {self.batch_mode!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0) and not isinstance(self.lr, list):
            bad(f"lr must be > 0, got {self.lr!r}")
        if not (0.0 <= float(self.gamma) <= 1.0):
            bad(f"gamma must be in [0, 1], got {self.gamma}")
        if self.minibatch_size is not None and self.minibatch_size > self.train_batch_size_per_learner:
            bad(f"minibatch_size ({self.minibatch_size}) must be <= train_batch_size_per_learner "
                f"({self.train_batch_size_per_learner})")
        if not isinstance(self.num_epochs, int) or self.num_epochs < 1:
            bad(f"num_epochs must be an int >= 1, got {self.num_epochs!r}")
        if self.evaluation_duration_unit not in ("episodes", "timesteps"):
            bad(f"evaluation_duration_unit must be 'episodes' or 'timesteps', got {self.evaluation_duration_unit!r}")
        if self.evaluation_duration == "auto" and not self.evaluation_parallel_to_training:
            bad("evaluation_duration='auto' needs evaluation_parallel_to_training=True")
        if self.grad_clip_by not in ("value", "norm", "global_norm"):
            bad(f"grad_clip_by must be 'value', 'norm' or 'global_norm', got {self.grad_clip_by!r}")
        if self.count_steps_by not in ("env_steps", "agent_steps"):
            bad(f"count_steps_by must be 'env_steps' or 'agent_steps', got {self.count_steps_by!r}")
        mc = self.model_config
        if mc.get("use_lstm"):
            bad("model_config.use_lstm=True is not supported by mpiray.rllib's default modules (MLPs); "
                "use a custom RLModule")
        if self.num_gpus_per_learner and self.num_learners == 0:
            pass  # the local learner takes the GPU of the algorithm's process
        return self

    def build_algo(self, env=None, logger_creator=None, use_copy=True):
        """The algorithm, set up (env runners started, learner built)."""
        if env is not None:
            self.env = env
        if self.algo_class is None:
            raise ValueError(f"{type(self).__name__} has no algo_class; use PPOConfig, DQNConfig, ...")
        return self.algo_class(config=self.copy() if use_copy else self, logger_creator=logger_creator)

    def build(self, env=None, logger_creator=None, use_copy=True):
        """Deprecated (as in Ray): use ``build_algo()``."""
        warnings.warn("AlgorithmConfig.build() is deprecated; use build_algo()", DeprecationWarning, stacklevel=2)
        return self.build_algo(env, logger_creator, use_copy)


def _same_space(a, b):
    try:
        if a == b:
            return True
    except Exception:
        pass
    return type(a) is type(b) and getattr(a, "shape", None) == getattr(b, "shape", None) and \
        getattr(a, "n", None) == getattr(b, "n", None)
