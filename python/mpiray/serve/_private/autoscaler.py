"""Autoscaling decisions of the controller (pure: no actors here, so the policy is tested
alone).

Every ``_POLL_S`` the controller asks each running replica how many requests it holds
(running plus waiting for its ``max_ongoing_requests`` slots) and feeds the sum to the
deployment's ``AutoscalingPolicy``. The policy averages the sums over ``look_back_period_s``
and wants ``ceil(average / target_ongoing_requests)`` replicas (scaled by
``upscaling_factor``/``downscaling_factor`` or ``smoothing_factor`` as in Ray), clamped to
``[min_replicas, max_replicas]``. A wish to grow must hold for ``upscale_delay_s``, a wish to
shrink for ``downscale_delay_s``, before the count changes."""

import collections
import math

POLL_S = 0.5   # how often replicas are asked for their load (Ray's replicas push every 10 s)


class AutoscalingPolicy:
    def __init__(self, config):
        self.cfg = dict(config)
        self.samples = collections.deque()   # (time, total load)
        self.up_since = None
        self.down_since = None

    def record(self, now, total_load):
        self.samples.append((now, float(total_load)))
        horizon = now - max(self.cfg.get("look_back_period_s", 30.0), POLL_S)
        while len(self.samples) > 1 and self.samples[0][0] < horizon:
            self.samples.popleft()

    def average(self):
        if not self.samples:
            return 0.0
        return sum(v for _, v in self.samples) / len(self.samples)

    def desired(self, current):
        c = self.cfg
        lo, hi = c["min_replicas"], c["max_replicas"]
        avg = self.average()
        raw = avg / c["target_ongoing_requests"]
        if current > 0:
            ratio = raw / current
            factor = c.get("upscaling_factor") if ratio > 1 else c.get("downscaling_factor")
            if factor is None:
                factor = c.get("smoothing_factor", 1.0)
            raw = current * (1 + (ratio - 1) * factor)
        want = math.ceil(raw - 1e-9) if raw > 0 else 0
        return max(lo, min(hi, want))

    def decide(self, now, current):
        """The replica count to have now (``current`` when nothing should change yet)."""
        want = self.desired(current)
        if want > current:
            self.down_since = None
            if self.up_since is None:
                self.up_since = now
            if now - self.up_since >= self.cfg["upscale_delay_s"]:
                self.up_since = None
                return want
        elif want < current:
            self.up_since = None
            if self.down_since is None:
                self.down_since = now
            if now - self.down_since >= self.cfg["downscale_delay_s"]:
                self.down_since = None
                return want
        else:
            self.up_since = self.down_since = None
        return current
