"""IMPALA's learner: V-trace off-policy targets (Espeholt et al. 2018) over the time-major
rollouts, then policy-gradient, value and entropy terms (RLlib's IMPALA loss)."""

import numpy as np
import torch

from ...core import ALL_MODULES
from ...core.columns import Columns
from ...core.learner.learner import Learner, as_tensor, piecewise
from ...utils import metrics as M


def vtrace(behaviour_logp, target_logp, rewards, values, next_values, terminated, cut, gamma,
           clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0):
    """V-trace targets ``vs`` and policy-gradient advantages over ``[T, N]`` numpy arrays.

    ``next_values[t]``: V of the observation after row ``t`` (in a NEXT_STEP rollout: row t+1's,
    the final observation after a truncation; the bootstrap value at the last row). ``cut``:
    the episode ended at ``t`` (terminated or truncated): the recursion does not cross it; a
    termination also zeroes the next value.
    """
    rhos = np.exp(target_logp - behaviour_logp)
    clipped_rhos = np.minimum(rhos, clip_rho_threshold) if clip_rho_threshold is not None else rhos
    cs = np.minimum(rhos, 1.0)
    disc = gamma * (1.0 - terminated.astype(np.float32))
    deltas = clipped_rhos * (rewards + disc * next_values - values)
    cont = gamma * (~cut) * cs
    T = rewards.shape[0]
    acc = np.zeros(rewards.shape[1:], np.float32)
    vs_minus_v = np.empty_like(deltas)
    for t in range(T - 1, -1, -1):
        acc = deltas[t] + cont[t] * acc
        vs_minus_v[t] = acc
    vs = values + vs_minus_v
    vs_next = np.concatenate([vs[1:], next_values[-1:]], axis=0)
    vs_next = np.where(cut, next_values, vs_next)
    pg_rhos = np.minimum(rhos, clip_pg_rho_threshold) if clip_pg_rho_threshold is not None else rhos
    pg_adv = pg_rhos * (rewards + disc * vs_next - values)
    return vs.astype(np.float32), pg_adv.astype(np.float32)


class IMPALATorchLearner(Learner):
    """One SGD step per train batch (or ``num_epochs`` x minibatches over the env columns)."""

    def after_build(self):
        seed = self.config.seed
        self._rng = np.random.default_rng(None if seed is None else int(seed) + 31 * self.rank)

    def get_extra_state(self):
        return {"rng": self._rng.bit_generator.state}

    def set_extra_state(self, state):
        if "rng" in state:
            self._rng.bit_generator.state = state["rng"]

    def _tensors(self, batch):
        dev = self.device
        obs = batch["obs"]
        T, N = obs.shape[:2]
        return {"obs": as_tensor(obs.reshape((T * N,) + obs.shape[2:]), dev),
                "boot_obs": as_tensor(batch["bootstrap_obs"], dev),
                "actions": as_tensor(batch["actions"].reshape((T * N,) + batch["actions"].shape[2:]), dev),
                "T": T, "N": N}

    def _vtrace_inputs(self, mid, batch, tb, fwd, values_flat):
        """numpy V-trace over the batch with the current module's values and log-probs."""
        module = self.module[mid]
        cfg = self.module_configs[mid]
        T, N = tb["T"], tb["N"]
        dist = module.get_train_action_dist_cls().from_logits(fwd[Columns.ACTION_DIST_INPUTS])
        target_logp = dist.logp(tb["actions"])
        with torch.no_grad():
            boot = module.compute_values({Columns.OBS: tb["boot_obs"]})
        v = values_flat.detach().reshape(T, N).float().cpu().numpy()
        nv = np.concatenate([v[1:], boot.float().cpu().numpy()[None]], axis=0)
        rewards = batch["rewards"]
        if cfg.clip_rewards:
            c = 1.0 if cfg.clip_rewards is True else float(cfg.clip_rewards)
            rewards = np.clip(rewards, -c, c)
        term = batch["terminateds"]
        cut = term | batch["truncateds"]
        return dist, target_logp, v, nv, rewards, term, cut

    def compute_loss_for_module(self, mid, cfg, batch, tb):
        module = self.module[mid]
        fwd = module.forward_train({Columns.OBS: tb["obs"]})
        values = module.compute_values({Columns.OBS: tb["obs"]}, embeddings=fwd.get(Columns.EMBEDDINGS))
        dist, target_logp, v, nv, rewards, term, cut = self._vtrace_inputs(mid, batch, tb, fwd, values)
        behaviour = batch["logp"]
        vs, pg_adv = vtrace(behaviour, target_logp.detach().reshape(v.shape).cpu().numpy(), rewards, v, nv,
                            term, cut, cfg.gamma, cfg.vtrace_clip_rho_threshold, cfg.vtrace_clip_pg_rho_threshold)
        dev = self.device
        mask = as_tensor(batch["valid"].reshape(-1), dev, torch.float32)
        size = mask.sum().clamp(min=1.0)
        pg_adv_t = as_tensor(pg_adv.reshape(-1), dev)
        vs_t = as_tensor(vs.reshape(-1), dev)
        pi_loss = -(target_logp * pg_adv_t * mask).sum() / size
        vf_loss = 0.5 * (((values - vs_t) ** 2) * mask).sum() / size
        entropy = (dist.entropy() * mask).sum() / size
        ent_coeff = piecewise(cfg.entropy_coeff, self._timestep)
        total = pi_loss + cfg.vf_loss_coeff * vf_loss - ent_coeff * entropy
        with torch.no_grad():
            stats = torch.stack([total, pi_loss, vf_loss, entropy])
        return total, stats, {"curr_entropy_coeff": ent_coeff}

    _STATS = (M.TOTAL_LOSS_KEY, M.POLICY_LOSS_KEY, M.VF_LOSS_KEY, M.ENTROPY_KEY)

    def update(self, batches, timesteps=None):
        timesteps = timesteps or {}
        self._timestep = timesteps.get(M.NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)
        self._update_lr(self._timestep)
        results = {}
        trained = 0
        for mid, batch in batches.items():
            if mid not in self.module:
                continue
            cfg = self.module_configs[mid]
            T, N = batch["valid"].shape
            n_valid = int(batch["valid"].sum())
            trained += n_valid
            # minibatches are groups of env columns (each column keeps its time order)
            cols = N if not cfg.minibatch_size else max(1, min(N, cfg.minibatch_size // max(1, T)))
            num_mb = max(1, N // cols)
            acc, count, extra = None, 0, {}
            for _ in range(cfg.num_epochs):
                perm = self._rng.permutation(N) if num_mb > 1 else np.arange(N)
                for i in range(num_mb):
                    sel = perm[i * cols:(i + 1) * cols]
                    sub = batch if num_mb == 1 else {k: (v[sel] if k == "bootstrap_obs" else v[:, sel])
                                                      for k, v in batch.items()}
                    tb = self._tensors(sub)
                    loss, stats, extra = self.compute_loss_for_module(mid, cfg, sub, tb)
                    self.apply_loss(mid, loss, lambda: dict(zip(self._STATS, stats.tolist())))
                    acc = stats if acc is None else acc + stats
                    count += 1
            self.after_gradient_step(mid)
            res = dict(zip(self._STATS, (acc / count).tolist()))
            res.update(extra)
            res["default_optimizer_learning_rate"] = float(self.optimizers[mid].param_groups[0]["lr"])
            res[M.NUM_MODULE_STEPS_TRAINED] = n_valid * cfg.num_epochs
            results[mid] = res
        results[ALL_MODULES] = {"num_env_steps_trained": trained}
        return results

    def after_gradient_step(self, mid):
        pass
