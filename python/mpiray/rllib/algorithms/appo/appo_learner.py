"""APPO's learner: IMPALA's V-trace with PPO's clipped surrogate against a target copy of the
policy (RLlib's APPO loss), the target refreshed every ``target_network_update_freq`` updates."""

import numpy as np
import torch

from ...core.columns import Columns
from ...core.learner.learner import as_tensor, piecewise
from ...core.rl_module.torch.default_modules import TARGET_NETWORK_ACTION_DIST_INPUTS
from ...utils import metrics as M
from ..impala.impala_learner import IMPALATorchLearner, vtrace


class APPOTorchLearner(IMPALATorchLearner):
    def after_build(self):
        super().after_build()
        self.curr_kl_coeffs = {mid: float(c.kl_coeff) for mid, c in self.module_configs.items()}
        self._updates_since_target = {mid: 0 for mid in self.module.keys()}
        for mid in self.module.keys():
            m = self.module[mid]
            if not hasattr(m, "make_target_networks"):
                raise ValueError(f"APPO needs modules with target networks (make_target_networks/forward_target); "
                                 f"{type(m).__name__} has none")
            m.make_target_networks()

    def get_extra_state(self):
        s = super().get_extra_state()
        s["kl_coeffs"] = dict(self.curr_kl_coeffs)
        return s

    def set_extra_state(self, state):
        super().set_extra_state(state)
        self.curr_kl_coeffs.update(state.get("kl_coeffs", {}))

    _STATS = (M.TOTAL_LOSS_KEY, M.POLICY_LOSS_KEY, M.VF_LOSS_KEY, M.ENTROPY_KEY, M.LEARNER_RESULTS_KL_KEY,
              "mean_is_ratio")

    def compute_loss_for_module(self, mid, cfg, batch, tb):
        module = self.module[mid]
        dev = self.device
        T, N = tb["T"], tb["N"]
        fwd = module.forward_train({Columns.OBS: tb["obs"]})
        values = module.compute_values({Columns.OBS: tb["obs"]}, embeddings=fwd.get(Columns.EMBEDDINGS))
        dist_cls = module.get_train_action_dist_cls()
        dist = dist_cls.from_logits(fwd[Columns.ACTION_DIST_INPUTS])
        old = dist_cls.from_logits(module.forward_target({Columns.OBS: tb["obs"]})[TARGET_NETWORK_ACTION_DIST_INPUTS])
        target_logp = dist.logp(tb["actions"])
        old_logp = old.logp(tb["actions"])
        with torch.no_grad():
            boot = module.compute_values({Columns.OBS: tb["boot_obs"]})
        v = values.detach().reshape(T, N).float().cpu().numpy()
        nv = np.concatenate([v[1:], boot.float().cpu().numpy()[None]], axis=0)
        rewards = batch["rewards"]
        if cfg.clip_rewards:
            c = 1.0 if cfg.clip_rewards is True else float(cfg.clip_rewards)
            rewards = np.clip(rewards, -c, c)
        term = batch["terminateds"]
        cut = term | batch["truncateds"]
        behaviour = batch["logp"]
        vs, pg_adv = vtrace(behaviour, old_logp.reshape(T, N).cpu().numpy(), rewards, v, nv, term, cut, cfg.gamma,
                            cfg.vtrace_clip_rho_threshold, cfg.vtrace_clip_pg_rho_threshold)
        mask = as_tensor(batch["valid"].reshape(-1), dev, torch.float32)
        size = mask.sum().clamp(min=1.0)
        pg_adv_t = as_tensor(pg_adv.reshape(-1), dev) * mask
        behaviour_t = as_tensor(behaviour.reshape(-1), dev)
        is_ratio = torch.clamp(torch.exp(behaviour_t - old_logp), 0.0, 2.0)
        ratio = is_ratio * torch.exp(target_logp - behaviour_t)
        surr = torch.minimum(pg_adv_t * ratio, pg_adv_t * torch.clamp(ratio, 1 - cfg.clip_param, 1 + cfg.clip_param))
        pi_loss = -(surr * mask).sum() / size
        vf_loss = 0.5 * (((values - as_tensor(vs.reshape(-1), dev)) ** 2) * mask).sum() / size
        entropy = (dist.entropy() * mask).sum() / size
        ent_coeff = piecewise(cfg.entropy_coeff, self._timestep)
        total = pi_loss + cfg.vf_loss_coeff * vf_loss - ent_coeff * entropy
        if cfg.use_kl_loss:
            kl = (old.kl(dist) * mask).sum() / size
            total = total + self.curr_kl_coeffs[mid] * kl
        else:
            kl = torch.zeros((), device=dev)
        with torch.no_grad():
            stats = torch.stack([total, pi_loss, vf_loss, entropy, kl, (is_ratio * mask).sum() / size])
        return total, stats, {"curr_entropy_coeff": ent_coeff, "curr_kl_coeff": self.curr_kl_coeffs[mid]}

    def after_gradient_step(self, mid):
        cfg = self.module_configs[mid]
        self._updates_since_target[mid] += 1
        if self._updates_since_target[mid] >= max(1, int(cfg.target_network_update_freq)):
            self.module[mid].sync_target_networks(tau=cfg.tau)
            self._updates_since_target[mid] = 0
            if cfg.use_kl_loss:
                pass  # adapted in update() from the last mean KL

    def update(self, batches, timesteps=None):
        results = super().update(batches, timesteps)
        for mid, res in results.items():
            cfg = self.module_configs.get(mid)
            if cfg is None or not cfg.use_kl_loss or M.LEARNER_RESULTS_KL_KEY not in res:
                continue
            kl = res[M.LEARNER_RESULTS_KL_KEY]
            if kl > 2.0 * cfg.kl_target:
                self.curr_kl_coeffs[mid] *= 1.5
            elif kl < 0.5 * cfg.kl_target:
                self.curr_kl_coeffs[mid] *= 0.5
        return results
