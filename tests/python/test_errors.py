"""Errors raised by tasks and actors: RayTaskError with the remote traceback, re-raised as the
original type, custom exception classes, propagation through dependent tasks, and unpicklable
exceptions (shared embedded cluster). Worker crashes are in test_lifecycle.py."""

import os
import threading

import pytest

import mpiray as ray
from mpiray import exceptions as rex

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("ray_cluster")]


class InventoryError(Exception):
    """A custom exception defined in the test module, with extra state."""

    def __init__(self, item, missing):
        super().__init__(item, missing)  # args must rebuild it when unpickled
        self.item = item
        self.missing = missing

    def __str__(self):
        return f"{self.item}: {self.missing} missing"


@ray.remote
def parse_number(text):
    return int(text)  # the source line that fails


@ray.remote
def check_stock(item):
    raise InventoryError(item, 3)


@ray.remote
def add_one(x):
    return x + 1


@ray.remote
def record_and_add(path, x):
    with open(path, "w") as f:
        f.write("ran")
    return x + 1


def test_task_error_is_ray_task_error_and_original_type():
    ref = parse_number.remote("not a number")
    with pytest.raises(ValueError) as info:
        ray.get(ref)
    e = info.value
    assert isinstance(e, rex.RayTaskError)
    assert isinstance(e, rex.RayError)
    assert isinstance(e.cause, ValueError)
    assert "invalid literal for int()" in str(e.cause)
    assert e.args == e.cause.args
    # Caught as RayTaskError too.
    with pytest.raises(rex.RayTaskError):
        ray.get(ref)


def test_task_error_carries_remote_traceback():
    with pytest.raises(rex.RayTaskError) as info:
        ray.get(parse_number.remote("x"))
    text = str(info.value)
    assert "Traceback (most recent call last)" in text
    assert "parse_number" in text  # the function's name
    assert "return int(text)  # the source line that fails" in text  # and its source line
    assert "test_errors.py" in text
    assert "ValueError: invalid literal" in text
    assert "pid" in text  # where it ran
    assert "_worker_hooks" not in text  # mpiray's own frames are left out
    assert info.value.traceback_str == text


def test_custom_exception_class():
    with pytest.raises(InventoryError) as info:
        ray.get(check_stock.remote("bolts"))
    e = info.value
    assert isinstance(e, rex.RayTaskError)
    assert e.item == "bolts" and e.missing == 3
    assert "bolts: 3 missing" in str(e)
    assert type(e.cause) is InventoryError


def test_error_propagates_through_dependent_tasks(tmp_path):
    marker = str(tmp_path / "ran")
    bad = parse_number.remote("nope")
    downstream = add_one.remote(add_one.remote(record_and_add.remote(marker, bad)))
    with pytest.raises(ValueError) as info:
        ray.get(downstream)
    assert isinstance(info.value, rex.RayTaskError)
    assert "parse_number" in str(info.value)  # the original failure, not a wrapper's
    assert not os.path.exists(marker)  # tasks with a failed argument do not run
    # A failed ref nested in a list is passed as a ref; getting it raises the original error.

    @ray.remote
    def get_inner(refs):
        try:
            ray.get(refs[0])
        except ValueError as e:
            return f"caught {type(e.cause).__name__}"

    assert ray.get(get_inner.remote([bad])) == "caught ValueError"


@ray.remote
def outer_get(which):
    inner = check_stock.remote("nuts") if which == "custom" else parse_number.remote("z")
    return ray.get(inner)


def test_error_raised_inside_nested_task_reaches_driver_as_task_error():
    with pytest.raises(rex.RayTaskError) as info:
        ray.get(outer_get.remote("custom"))
    text = str(info.value)
    assert "outer_get" in text and "check_stock" in text  # both remote tracebacks
    assert "nuts: 3 missing" in text


@pytest.mark.parametrize("which,exc", [("builtin", ValueError), ("custom", InventoryError)])
def test_error_type_survives_nested_get(which, exc):
    with pytest.raises(exc):
        ray.get(outer_get.remote(which))


def test_every_get_of_a_failed_ref_raises():
    ref = check_stock.remote("a")
    for _ in range(3):
        with pytest.raises(InventoryError):
            ray.get(ref)
    with pytest.raises(InventoryError):
        ray.get([add_one.remote(1), ref])
    ready, _ = ray.wait([ref], timeout=30)
    assert ready == [ref]  # a failed object is "ready"


class Unpicklable(Exception):
    def __init__(self):
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def test_unpicklable_exception_still_reported():
    @ray.remote
    def raise_unpicklable():
        raise Unpicklable()

    with pytest.raises(rex.RayTaskError) as info:
        ray.get(raise_unpicklable.remote())
    assert "holds a lock" in str(info.value)
    assert "Unpicklable" in str(info.value)


def test_actor_method_error_is_original_type():
    @ray.remote
    class Shop:
        def sell(self, item):
            raise InventoryError(item, 1)

    s = Shop.remote()
    with pytest.raises(InventoryError) as info:
        ray.get(s.sell.remote("gears"))
    assert isinstance(info.value, rex.RayTaskError)
    assert info.value.item == "gears"
    assert "sell" in str(info.value)


@ray.remote
class Faulty:
    def divide(self, a, b):
        return a / b  # the failing actor line


def test_actor_method_error_carries_remote_traceback():
    f = Faulty.remote()
    with pytest.raises(ZeroDivisionError) as info:
        ray.get(f.divide.remote(1, 0))
    text = str(info.value)
    assert "Traceback (most recent call last)" in text
    assert "return a / b  # the failing actor line" in text


@ray.remote(max_retries=0)
def _cancelled_later():
    import time
    for _ in range(600):  # short sleeps: a cancel interrupts it between two (not inside one)
        time.sleep(0.1)


@ray.remote
def _consume(x):
    return x


def test_system_error_through_an_argument_is_also_a_task_error():
    # As Ray: a task whose argument is a system error (here a cancelled task's) fails with a
    # RayTaskError that is also an instance of that error's type; the failed ref itself
    # raises the plain system error.
    upstream = _cancelled_later.remote()
    downstream = _consume.remote(upstream)
    ray.cancel(upstream)
    with pytest.raises(rex.TaskCancelledError) as plain:
        ray.get(upstream, timeout=30)
    assert not isinstance(plain.value, rex.RayTaskError)
    with pytest.raises(rex.RayTaskError) as wrapped:
        ray.get(downstream, timeout=30)
    assert isinstance(wrapped.value, rex.TaskCancelledError)
    assert isinstance(wrapped.value.cause, rex.TaskCancelledError)
    # and a task depending on that one sees the same
    with pytest.raises(rex.TaskCancelledError):
        ray.get(_consume.remote(downstream), timeout=30)
