"""``DefaultModelConfig`` (Ray's ``ray.rllib.core.rl_module.default_model_config``): how the
default RLModules of the algorithms are built."""

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Union


@dataclass
class DefaultModelConfig:
    """The fields of Ray 2.60's dataclass. mpiray's default modules are MLPs over flat
    observations (Box, or one-hot Discrete): ``fcnet_*`` (the encoder), ``head_fcnet_*`` (the
    policy and value heads), ``vf_share_layers``, ``free_log_std``, ``log_std_clip_param``.
    ``conv_filters`` and ``use_lstm`` are accepted here and refused when a module is built."""

    fcnet_hiddens: List[int] = field(default_factory=lambda: [256, 256])
    fcnet_activation: str = "tanh"
    fcnet_kernel_initializer: Optional[Union[str, Callable]] = None
    fcnet_kernel_initializer_kwargs: Optional[dict] = None
    fcnet_bias_initializer: Optional[Union[str, Callable]] = None
    fcnet_bias_initializer_kwargs: Optional[dict] = None
    fcnet_use_layernorm: bool = False
    conv_filters: Optional[list] = None
    conv_activation: str = "relu"
    conv_kernel_initializer: Optional[Union[str, Callable]] = None
    conv_kernel_initializer_kwargs: Optional[dict] = None
    conv_bias_initializer: Optional[Union[str, Callable]] = None
    conv_bias_initializer_kwargs: Optional[dict] = None
    head_fcnet_hiddens: List[int] = field(default_factory=lambda: [])
    head_fcnet_activation: str = "relu"
    head_fcnet_kernel_initializer: Optional[Union[str, Callable]] = None
    head_fcnet_kernel_initializer_kwargs: Optional[dict] = None
    head_fcnet_bias_initializer: Optional[Union[str, Callable]] = None
    head_fcnet_bias_initializer_kwargs: Optional[dict] = None
    head_fcnet_use_layernorm: bool = False
    free_log_std: bool = False
    log_std_clip_param: float = 20.0
    vf_share_layers: bool = True
    use_lstm: bool = False
    max_seq_len: int = 20
    lstm_cell_size: int = 256
    lstm_use_prev_action: bool = False
    lstm_use_prev_reward: bool = False
    lstm_kernel_initializer: Optional[Union[str, Callable]] = None
    lstm_kernel_initializer_kwargs: Optional[dict] = None
    lstm_bias_initializer: Optional[Union[str, Callable]] = None
    lstm_bias_initializer_kwargs: Optional[dict] = None
    fusionnet_hiddens: List[int] = field(default_factory=lambda: [256, 256])
    fusionnet_activation: str = "tanh"
    fusionnet_kernel_initializer: Optional[Union[str, Callable]] = None
    fusionnet_kernel_initializer_kwargs: Optional[dict] = None
    fusionnet_bias_initializer: Optional[Union[str, Callable]] = None
    fusionnet_bias_initializer_kwargs: Optional[dict] = None
