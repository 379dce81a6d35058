"""PPO's learner: GAE (mpiray.kernels.gae) over the time-major rollouts, then ``num_epochs``
passes of clipped-surrogate minibatch steps (RLlib's loss, KL penalty and its adaptation)."""

import numpy as np
import torch

from ....kernels import discounted_returns, gae
from ...core import ALL_MODULES
from ...core.columns import Columns
from ...core.distribution import TorchCategorical
from ...core.learner.learner import Learner, as_tensor, explained_variance, piecewise
from ...utils import metrics as M


def prepare_values(module, batch, device):
    """V(obs) ``[T, N]`` and V(bootstrap_obs) ``[N]`` with the current module (no gradients)."""
    obs = batch["obs"]
    T, N = obs.shape[:2]
    flat = obs.reshape((T * N,) + obs.shape[2:])
    allobs = np.concatenate([flat, batch["bootstrap_obs"]], axis=0)
    with torch.no_grad():
        v = module.compute_values({Columns.OBS: as_tensor(allobs, device)}).float().cpu().numpy()
    return v[:T * N].reshape(T, N), v[T * N:]


class PPOTorchLearner(Learner):
    """RLlib's PPO loss on torch."""

    def after_build(self):
        self.curr_kl_coeffs = {mid: float(c.kl_coeff) for mid, c in self.module_configs.items()}
        seed = self.config.seed
        self._rng = np.random.default_rng(None if seed is None else int(seed) + 31 * self.rank)

    def get_extra_state(self):
        return {"kl_coeffs": dict(self.curr_kl_coeffs), "rng": self._rng.bit_generator.state}

    def set_extra_state(self, state):
        if "kl_coeffs" in state:
            self.curr_kl_coeffs.update(state["kl_coeffs"])
        if "rng" in state:
            self._rng.bit_generator.state = state["rng"]

    def _prepare(self, mid, batch):
        cfg = self.module_configs[mid]
        module = self.module[mid]
        dev = self.device
        valid = batch["valid"]
        rewards = batch["rewards"]
        if cfg.clip_rewards:
            c = 1.0 if cfg.clip_rewards is True else float(cfg.clip_rewards)
            rewards = np.clip(rewards, -c, c)
        if cfg.use_critic:
            values, boot = prepare_values(module, batch, dev)
        else:
            values = np.zeros(rewards.shape, np.float32)
            boot = np.zeros(rewards.shape[1], np.float32)
        if cfg.use_gae and cfg.use_critic:
            adv, vt = gae(rewards, values, batch["terminateds"], batch["truncateds"], bootstrap_values=boot,
                          gamma=cfg.gamma, lambda_=cfg.lambda_)
        else:
            vt = discounted_returns(rewards, batch["terminateds"], batch["truncateds"], gamma=cfg.gamma,
                                    bootstrap_values=boot, values=values if cfg.use_critic else None)
            adv = vt - values
        m = valid.reshape(-1)
        T, N = valid.shape
        obs = batch["obs"].reshape((T * N,) + batch["obs"].shape[2:])[m]
        actions = batch["actions"].reshape((T * N,) + batch["actions"].shape[2:])[m]
        adv = adv.reshape(-1)[m].astype(np.float32)
        # RLlib standardises the advantages over the train batch
        if adv.size > 1:
            adv = (adv - adv.mean()) / max(1e-4, float(adv.std()))
        data = {
            Columns.OBS: as_tensor(obs, dev),
            Columns.ACTIONS: as_tensor(actions, dev),
            Columns.ACTION_LOGP: as_tensor(batch["logp"].reshape(-1)[m], dev),
            Columns.ACTION_DIST_INPUTS: self._prev_dist_inputs(module, as_tensor(batch["dist_inputs"].reshape(
                (T * N, -1))[m], dev)),
            Columns.ADVANTAGES: as_tensor(adv, dev),
            Columns.VALUE_TARGETS: as_tensor(vt.reshape(-1)[m].astype(np.float32), dev),
        }
        return data, int(m.sum()), T * N

    @staticmethod
    def _prev_dist_inputs(module, x):
        """The sampling policy's distribution inputs; categorical logits normalised once here
        instead of in every minibatch."""
        if module.get_train_action_dist_cls() is TorchCategorical:
            return x - torch.logsumexp(x, dim=-1, keepdim=True)
        return x

    def _prev_dist(self, dist_cls, x):
        if dist_cls is TorchCategorical:
            return TorchCategorical.from_normalized_logits(x)
        return dist_cls.from_logits(x)

    def compute_loss_for_module(self, mid, cfg, mb, want_stats=True):
        """RLlib's PPO loss; returns (total_loss, stats as one detached tensor or None, entropy
        coeff). The stats' extra terms are computed only when ``want_stats``."""
        module = self.module[mid]
        fwd = module.forward_train({Columns.OBS: mb[Columns.OBS]})
        dist_cls = module.get_train_action_dist_cls()
        curr = dist_cls.from_logits(fwd[Columns.ACTION_DIST_INPUTS])
        logp = curr.logp(mb[Columns.ACTIONS])
        ratio = torch.exp(logp - mb[Columns.ACTION_LOGP])
        adv = mb[Columns.ADVANTAGES]
        if cfg.use_kl_loss:
            kl = self._prev_dist(dist_cls, mb[Columns.ACTION_DIST_INPUTS]).kl(curr).mean()
        else:
            kl = torch.zeros((), device=adv.device)
        ent_coeff = piecewise(cfg.entropy_coeff, self._timestep)
        entropy = curr.entropy() if (ent_coeff or want_stats) else None
        surr = torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - cfg.clip_param, 1 + cfg.clip_param))
        if cfg.use_critic:
            values = module.compute_values({Columns.OBS: mb[Columns.OBS]}, embeddings=fwd.get(Columns.EMBEDDINGS))
            vf_unclipped = (values - mb[Columns.VALUE_TARGETS]) ** 2
            vf = torch.clamp(vf_unclipped, 0, cfg.vf_clip_param)
            total = -surr + cfg.vf_loss_coeff * vf
        else:
            vf_unclipped = vf = torch.zeros_like(adv)
            total = -surr
        if ent_coeff:
            total = total - ent_coeff * entropy
        total = total.mean()
        if cfg.use_kl_loss:
            total = total + self.curr_kl_coeffs[mid] * kl
        stats = None
        if want_stats:
            with torch.no_grad():
                stats = torch.stack([total, -surr.mean(), vf.mean(), vf_unclipped.mean(), entropy.mean(), kl])
        return total, stats, ent_coeff

    _STATS = (M.TOTAL_LOSS_KEY, M.POLICY_LOSS_KEY, M.VF_LOSS_KEY, M.LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY,
              M.ENTROPY_KEY, M.LEARNER_RESULTS_KL_KEY)

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
            data, n, rows = self._prepare(mid, batch)
            if n == 0:
                continue
            trained += n
            mb = cfg.minibatch_size or rows
            num_mb = max(1, rows // mb)  # from the rows incl. masked ones: equal on every learner
            mb = min(mb, n)
            need = num_mb * mb
            acc = None
            count = 0
            gnorms = []
            for _ in range(cfg.num_epochs):
                perm = self._rng.permutation(n)
                if need > n:  # cycle, as RLlib's minibatch iterator does
                    perm = np.resize(perm, need)
                idx = torch.from_numpy(perm[:need]).to(self.device)
                epoch = {k: v.index_select(0, idx) for k, v in data.items()}
                for i in range(num_mb):
                    sl = slice(i * mb, (i + 1) * mb)
                    # the loss terms are reported from each epoch's last minibatch (RLlib reports
                    # the last values); computing them every step costs more than the step
                    last = i == num_mb - 1
                    loss, stats, ent = self.compute_loss_for_module(mid, cfg, {k: v[sl] for k, v in epoch.items()},
                                                                    want_stats=last)
                    g = self.apply_loss(mid, loss, lambda: {"total_loss": float(loss.detach())})
                    if g is not None:
                        gnorms.append(g)
                    if last:
                        acc = stats if acc is None else acc + stats
                    count += 1
            res = dict(zip(self._STATS, (acc / cfg.num_epochs).tolist()))
            with torch.no_grad():
                module = self.module[mid]
                if cfg.use_critic:
                    v = module.compute_values({Columns.OBS: data[Columns.OBS]})
                    res[M.LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY] = float(
                        explained_variance(data[Columns.VALUE_TARGETS], v))
            if cfg.use_kl_loss:
                kl = res[M.LEARNER_RESULTS_KL_KEY]
                if kl > 2.0 * cfg.kl_target:
                    self.curr_kl_coeffs[mid] *= 1.5
                elif kl < 0.5 * cfg.kl_target:
                    self.curr_kl_coeffs[mid] *= 0.5
            res[M.LEARNER_RESULTS_CURR_KL_COEFF_KEY] = self.curr_kl_coeffs[mid]
            res[M.LEARNER_RESULTS_CURR_ENTROPY_COEFF_KEY] = float(ent)
            res["default_optimizer_learning_rate"] = float(self.optimizers[mid].param_groups[0]["lr"])
            res[M.NUM_MODULE_STEPS_TRAINED] = n * cfg.num_epochs
            res["num_minibatch_updates"] = count
            res["module_train_batch_size_mean"] = float(mb)
            if gnorms:
                res["gradients_default_optimizer_global_norm"] = float(np.mean(gnorms))
            results[mid] = res
        results[ALL_MODULES] = {"num_env_steps_trained": trained,
                                "num_trainable_parameters": int(sum(p.numel() for p in self.module.parameters()
                                                                    if p.requires_grad))}
        return results
