"""DQN's learner: (double) Q-learning on replayed n-step transitions with a target network,
Huber or MSE loss weighted by the replay's importance weights."""

import numpy as np
import torch

from ...core import ALL_MODULES
from ...core.columns import Columns
from ...core.learner.learner import Learner, as_tensor
from ...core.rl_module.torch.default_modules import QF_PREDS
from ...utils import metrics as M


class DQNTorchLearner(Learner):
    def after_build(self):
        for mid in self.module.keys():
            self.module[mid].make_target_networks()

    def update_target_networks(self, tau=None):
        for mid in self.module.keys():
            cfg = self.module_configs[mid]
            self.module[mid].sync_target_networks(tau=cfg.tau if tau is None else tau)
        return True

    def update(self, batches, timesteps=None):
        results = {}
        trained = 0
        self._update_lr((timesteps or {}).get(M.NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))
        for mid, b in batches.items():
            if mid not in self.module:
                continue
            cfg = self.module_configs[mid]
            m = self.module[mid]
            dev = self.device
            obs = as_tensor(b["obs"], dev)
            nxt = as_tensor(b["next_obs"], dev)
            actions = as_tensor(b["actions"], dev, torch.int64)
            rewards = as_tensor(b["rewards"], dev, torch.float32)
            done = as_tensor(b["terminateds"], dev, torch.float32)
            disc = as_tensor(b["discounts"], dev, torch.float32)
            w = as_tensor(b["weights"], dev, torch.float32)
            B = obs.shape[0]
            if cfg.double_q:  # one pass of the online net over obs and next obs
                q_all = m.forward_train({Columns.OBS: torch.cat([obs, nxt], 0)})[QF_PREDS]
                q, q_tp1_online = q_all[:B], q_all[B:].detach()
            else:
                q = m.forward_train({Columns.OBS: obs})[QF_PREDS]
            q_sel = q.gather(1, actions.view(-1, 1)).squeeze(1)
            with torch.no_grad():
                q_tp1_target = m.forward_target({Columns.OBS: nxt})[QF_PREDS]
                if cfg.double_q:
                    a_star = q_tp1_online.argmax(1, keepdim=True)
                    q_next = q_tp1_target.gather(1, a_star).squeeze(1)
                else:
                    q_next = q_tp1_target.max(1).values
                target = rewards + disc * (1.0 - done) * q_next
            td = q_sel - target
            if cfg.td_error_loss_fn == "huber":
                per = torch.nn.functional.huber_loss(q_sel, target, reduction="none", delta=1.0)
            else:
                per = 0.5 * td ** 2
            loss = (w * per).mean()
            self.apply_loss(mid, loss, lambda: {"qf_loss": float(loss.detach()),
                                                "rewards_finite": float(np.isfinite(b["rewards"]).all())})
            n = len(b["rewards"])
            trained += n
            results[mid] = {M.QF_LOSS_KEY: float(loss.detach()), M.TOTAL_LOSS_KEY: float(loss.detach()),
                            "qf_mean": float(q_sel.detach().mean()), "qf_max": float(q_sel.detach().max()),
                            "qf_min": float(q_sel.detach().min()), M.TD_ERROR_KEY: td.detach().cpu().numpy(),
                            "td_error_mean": float(td.detach().abs().mean()),
                            "default_optimizer_learning_rate": float(self.optimizers[mid].param_groups[0]["lr"]),
                            M.NUM_MODULE_STEPS_TRAINED: n}
        results[ALL_MODULES] = {"num_env_steps_trained": trained}
        return results
