"""Search-space primitives (Ray's ``ray.tune.search.sample``): ``uniform``, ``choice``,
``sample_from``, ``grid_search`` and friends. Each ``Domain`` samples with a
``random.Random`` given by the caller, so an experiment's trials can be generated again
identically (Tuner.restore relies on that)."""

import math
import random as _random


class Domain:
    """A parameter's range; ``sample(spec, size, random_state)``."""

    sampler = None
    default_sampler_cls = None

    def set_sampler(self, sampler, allow_override=False):
        if self.sampler and not allow_override:
            raise ValueError(f"You can only choose one sampler for parameter domains. Existing "
                             f"sampler for parameter {type(self).__name__}: {self.sampler}. "
                             f"Tried to add {sampler}")
        self.sampler = sampler

    def get_sampler(self):
        return self.sampler or self.default_sampler_cls()

    def sample(self, spec=None, size=1, random_state=None):
        rng = _as_rng(random_state)
        sampler = self.get_sampler()
        if size == 1:
            return sampler.sample(self, spec, rng)
        return [sampler.sample(self, spec, rng) for _ in range(size)]

    def is_grid(self):
        return False

    def is_function(self):
        return False

    def is_valid(self, value):
        return True

    @property
    def domain_str(self):
        return "(unknown)"


def _as_rng(random_state):
    if random_state is None:
        return _random
    if isinstance(random_state, int):
        return _random.Random(random_state)
    if isinstance(random_state, _random.Random):
        return random_state
    if hasattr(random_state, "random") and hasattr(random_state, "integers"):  # numpy Generator
        return _NumpyRng(random_state)
    if hasattr(random_state, "random_sample"):  # numpy RandomState
        return _NumpyRng(random_state)
    return random_state


class _NumpyRng:
    def __init__(self, g):
        self._g = g

    def random(self):
        return float(self._g.random()) if hasattr(self._g, "integers") else float(self._g.random_sample())

    def gauss(self, mu, sigma):
        return float(self._g.normal(mu, sigma))

    def randrange(self, n):
        return int(self._g.integers(n)) if hasattr(self._g, "integers") else int(self._g.randint(n))


class Sampler:
    def sample(self, domain, spec, rng):  # pragma: no cover
        raise NotImplementedError


class Uniform(Sampler):
    def sample(self, domain, spec, rng):
        if isinstance(domain, Categorical):
            return domain.categories[rng.randrange(len(domain.categories))]
        if isinstance(domain, Integer):
            return domain.lower + rng.randrange(domain.upper - domain.lower)
        return domain.lower + (domain.upper - domain.lower) * rng.random()

    def __str__(self):
        return "Uniform"


class LogUniform(Sampler):
    def __init__(self, base=10):
        self.base = base
        if base <= 0:
            raise ValueError("Base has to be strictly greater than 0")

    def sample(self, domain, spec, rng):
        lo = math.log(domain.lower, self.base)
        hi = math.log(domain.upper, self.base)
        v = self.base ** (lo + (hi - lo) * rng.random())
        if isinstance(domain, Integer):
            return min(int(math.floor(v)), domain.upper - 1)
        return min(max(v, domain.lower), domain.upper)

    def __str__(self):
        return "LogUniform"


class Normal(Sampler):
    def __init__(self, mean=0.0, sd=0.0):
        self.mean = mean
        self.sd = sd
        if sd <= 0:
            raise ValueError("Normal sd must be > 0")

    def sample(self, domain, spec, rng):
        v = rng.gauss(self.mean, self.sd)
        return min(max(v, domain.lower), domain.upper)

    def __str__(self):
        return "Normal"


class Grid(Sampler):
    def sample(self, domain, spec, rng):
        return RuntimeError("Do not call `sample()` on grid.")


class Quantized(Sampler):
    def __init__(self, sampler, q):
        self.sampler = sampler
        self.q = q
        if not q:
            raise ValueError("Quantized() expects a q != 0")

    def get_sampler(self):
        return self.sampler

    def sample(self, domain, spec, rng):
        v = self.sampler.sample(domain, spec, rng)
        if isinstance(domain, Integer):
            # q*randint over the inclusive range (Ray's qrandint includes upper)
            return int(round(v / self.q) * self.q)
        q = self.q
        quantized = round(v / q) * q
        # keep within bounds like Ray does
        if quantized < domain.lower:
            quantized += q
        if quantized > domain.upper:
            quantized -= q
        return quantized

    def __str__(self):
        return f"Quantized({self.sampler}, q={self.q})"


class Float(Domain):
    default_sampler_cls = Uniform

    def __init__(self, lower, upper):
        self.lower = float(lower) if lower is not None else float("-inf")
        self.upper = float(upper) if upper is not None else float("inf")

    def uniform(self):
        if not math.isfinite(self.lower) or not math.isfinite(self.upper):
            raise ValueError("Uniform requires a lower and upper bound")
        if self.lower > self.upper:
            raise ValueError(f"uniform: lower bound {self.lower} > upper bound {self.upper}")
        new = _copy(self)
        new.set_sampler(Uniform())
        return new

    def loguniform(self, base=10):
        if not self.lower > 0:
            raise ValueError("LogUniform requires a lower bound greater than 0. "
                             f"Got: {self.lower}. Did you pass a variable that has been "
                             "log-transformed? If so, pass the non-transformed value instead.")
        if not 0 < self.upper < float("inf"):
            raise ValueError("LogUniform requires a upper bound greater than 0. "
                             f"Got: {self.lower}.")
        new = _copy(self)
        new.set_sampler(LogUniform(base))
        return new

    def normal(self, mean=0.0, sd=1.0):
        new = _copy(self)
        new.set_sampler(Normal(mean, sd))
        return new

    def quantized(self, q):
        if self.lower > float("-inf") and not _is_multiple(self.lower, q):
            raise ValueError(f"Your lower variable bound {self.lower} is not divisible by "
                             f"quantization factor {q}.")
        if self.upper < float("inf") and not _is_multiple(self.upper, q):
            raise ValueError(f"Your upper variable bound {self.upper} is not divisible by "
                             f"quantization factor {q}.")
        new = _copy(self)
        new.set_sampler(Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def is_valid(self, value):
        return self.lower <= value <= self.upper

    @property
    def domain_str(self):
        return f"({self.lower}, {self.upper})"


class Integer(Domain):
    default_sampler_cls = Uniform

    def __init__(self, lower, upper):
        self.lower = int(lower)
        self.upper = int(upper)
        if self.upper <= self.lower:
            raise ValueError(f"randint: upper bound {upper} must be greater than lower bound {lower}")

    def uniform(self):
        new = _copy(self)
        new.set_sampler(Uniform())
        return new

    def loguniform(self, base=10):
        if not self.lower > 0:
            raise ValueError("LogUniform requires a lower bound greater than 0. "
                             f"Got: {self.lower}.")
        new = _copy(self)
        new.set_sampler(LogUniform(base))
        return new

    def quantized(self, q):
        new = _copy(self)
        new.set_sampler(Quantized(new.get_sampler(), q), allow_override=True)
        return new

    def is_valid(self, value):
        return self.lower <= value <= self.upper

    @property
    def domain_str(self):
        return f"({self.lower}, {self.upper})"


class Categorical(Domain):
    default_sampler_cls = Uniform

    def __init__(self, categories):
        self.categories = list(categories)
        if not self.categories:
            raise ValueError("choice() needs a non-empty list of categories")

    def uniform(self):
        new = _copy(self)
        new.set_sampler(Uniform())
        return new

    def grid(self):
        new = _copy(self)
        new.set_sampler(Grid())
        return new

    def is_grid(self):
        return isinstance(self.sampler, Grid)

    def __len__(self):
        return len(self.categories)

    def __getitem__(self, item):
        return self.categories[item]

    def is_valid(self, value):
        return value in self.categories

    @property
    def domain_str(self):
        return f"{self.categories}"


class Function(Domain):
    """``sample_from(lambda spec: ...)``: ``spec.config`` is the trial's config resolved so
    far (conditional spaces)."""

    class _CallSampler(Sampler):
        def sample(self, domain, spec, rng):
            if domain.pass_spec:
                return domain.func(spec if spec is not None else _Spec({}))
            return domain.func()

        def __str__(self):
            return "Base"

    default_sampler_cls = _CallSampler

    def __init__(self, func):
        import inspect
        self.func = func
        try:
            sig = inspect.signature(func)
            self.pass_spec = len(sig.parameters) > 0
        except (TypeError, ValueError):
            self.pass_spec = True

    def is_function(self):
        return True

    @property
    def domain_str(self):
        return f"{self.func}()"


class _Spec(dict):
    """What ``sample_from`` functions receive: ``spec.config.x`` or ``spec["config"]["x"]``."""

    def __getattr__(self, item):
        try:
            v = self[item]
        except KeyError:
            raise AttributeError(item) from None
        return _Spec(v) if isinstance(v, dict) and not isinstance(v, _Spec) else v


def _copy(domain):
    import copy
    new = copy.copy(domain)
    new.sampler = None
    return new


def _is_multiple(value, q):
    r = value / q
    return abs(r - round(r)) < 1e-9


def uniform(lower, upper):
    return Float(lower, upper).uniform()


def quniform(lower, upper, q):
    return Float(lower, upper).uniform().quantized(q)


def loguniform(lower, upper, base=10):
    return Float(lower, upper).loguniform(base)


def qloguniform(lower, upper, q, base=10):
    return Float(lower, upper).loguniform(base).quantized(q)


def choice(categories):
    return Categorical(categories).uniform()


def randint(lower, upper):
    """An integer in [lower, upper) (upper excluded, as Ray)."""
    return Integer(lower, upper).uniform()


def lograndint(lower, upper, base=10):
    return Integer(lower, upper).loguniform(base)


def qrandint(lower, upper, q=1):
    """A multiple of q in [lower, upper] (upper included, as Ray)."""
    return Integer(lower, upper + 1).uniform().quantized(q)


def qlograndint(lower, upper, q, base=10):
    return Integer(lower, upper + 1).loguniform(base).quantized(q)


def randn(mean=0.0, sd=1.0):
    return Float(None, None).normal(mean, sd)


def qrandn(mean, sd, q):
    return Float(None, None).normal(mean, sd).quantized(q)


def sample_from(func):
    return Function(func)


def grid_search(values):
    """Every value, one trial each (times num_samples; grids multiply)."""
    return {"grid_search": list(values)}
