"""The job's state as the head sees it, as ``ray.util.state``: ``list_tasks``,
``list_actors``, ``get_actor``, ``list_objects``, ``list_nodes`` and ``summarize_*`` (driver only).

Rows are dicts that also allow attribute access (``row.state`` or ``row["state"]``), with
Ray's field names where mpiray has the information. Tasks are the live ones (queued,
waiting for arguments, running) followed by the latest finished ones (the head keeps the last
100,000 for the timeline; finished rows have no task id).
"""

from .. import _core

_TASK_TYPES = {0: "NORMAL_TASK", 1: "ACTOR_CREATION_TASK", 2: "ACTOR_TASK"}


class _Row(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _node_hex(node):
    return None if node is None or node == 0xFFFFFFFF else format(node, "032x")


def _filter(rows, filters, limit):
    for f in filters or []:
        if not (isinstance(f, (tuple, list)) and len(f) == 3 and f[1] in ("=", "!=")):
            raise ValueError(f"a filter is (key, '=' or '!=', value), got {f!r}")
        key, op, value = f
        if rows and key not in rows[0]:
            raise ValueError(f"cannot filter on {key!r}: rows have {sorted(rows[0])}")
        rows = [r for r in rows if (str(r.get(key)) == str(value)) == (op == "=")]
    return rows[:limit]


def _state(limit):
    if not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return _core.list_state(limit)


def _task_hex(task_id):
    """The runtime's "submitter.sequence" id as the hex string get_runtime_context().
    get_task_id() gives for the same task."""
    if not task_id:
        return None
    from .._api import _task_id
    return _task_id({"task_id": task_id}).hex()


def _actor_hex(actor_id):
    """The runtime's "submitter.sequence" actor id as the hex string of ActorID
    (handle._actor_id.hex(), get_runtime_context().get_actor_id())."""
    try:
        submitter, seq = (int(p) for p in str(actor_id).split("."))
    except ValueError:
        return str(actor_id)
    return ((submitter << 40) | seq).to_bytes(8, "little").hex()


def list_tasks(address=None, filters=None, limit=100, timeout=None, detail=False,
               raise_on_missing_output=True):
    rows = []
    for t in _state(limit)["tasks"]:
        rows.append(_Row(task_id=_task_hex(t["id"]), name=t["name"], func_or_class_name=t["name"],
                         state=t["state"], type=_TASK_TYPES.get(t["kind"], "NORMAL_TASK"),
                         node_id=_node_hex(t["node"]),
                         worker_rank=None if t["worker"] == 0xFFFFFFFF else t["worker"]))
    return _filter(rows, filters, limit)


def list_actors(address=None, filters=None, limit=100, timeout=None, detail=False,
                raise_on_missing_output=True):
    rows = []
    for a in _state(limit)["actors"]:
        rows.append(_Row(actor_id=_actor_hex(a["id"]), class_name=a["name"], name=a["name"] if a["named"] else "",
                         state=a["state"], pid=a["pid"] or None, node_id=_node_hex(a["node"]),
                         ray_namespace=a["ns"], num_restarts=a["incarnation"] - 1,
                         death_cause=a["error"] or None))
    return _filter(rows, filters, limit)


def get_actor(id, address=None, timeout=None, _explain=False):
    """The row of list_actors for one actor id (hex, as ``handle._actor_id.hex()``), or None."""
    for row in list_actors(limit=100000):
        if row["actor_id"] == id:
            return row
    return None


def list_objects(address=None, filters=None, limit=100, timeout=None, detail=False,
                 raise_on_missing_output=True):
    rows = []
    for o in _state(limit)["objects"]:
        rows.append(_Row(object_id=o["id"], object_size=o["size"], location=o["where"],
                         node_ids=[_node_hex(n) for n in o["nodes"]], holder_ranks=list(o["holders"]),
                         pinned_by_tasks=o["pins"]))
    return _filter(rows, filters, limit)


def list_nodes(address=None, filters=None, limit=100, timeout=None, detail=False,
               raise_on_missing_output=True):
    snap = _core.snapshot()
    hosts = {}
    for p in snap["processes"]:
        hosts.setdefault(p["node"], p["host"])
    rows = []
    for n in snap["nodes"]:
        rows.append(_Row(node_id=_node_hex(n["id"]), node_name=hosts.get(n["id"], ""),
                         state="ALIVE", is_head_node=n["id"] == snap["processes"][0]["node"]
                         if snap["processes"] else False,
                         resources_total={k: v for k, v in n["total"].items() if v},
                         num_workers=len(n["workers"])))
    return _filter(rows, filters, limit)


def _summary(rows, key, state_key):
    out = {}
    for r in rows:
        entry = out.setdefault(r[key], {"state_counts": {}})
        entry["state_counts"][r[state_key]] = entry["state_counts"].get(r[state_key], 0) + 1
    return out


def summarize_tasks(address=None, timeout=None, raise_on_missing_output=True, limit=10000):
    state = _state(limit)
    rows = list_tasks(limit=limit)
    return {"cluster": {"summary": _summary(rows, "func_or_class_name", "state"),
                        "total_tasks": state["total_tasks"]}}


def summarize_actors(address=None, timeout=None, raise_on_missing_output=True, limit=10000):
    state = _state(limit)
    rows = list_actors(limit=limit)
    return {"cluster": {"summary": _summary(rows, "class_name", "state"),
                        "total_actors": state["total_actors"]}}


def summarize_objects(address=None, timeout=None, raise_on_missing_output=True, limit=10000):
    state = _state(limit)
    rows = list_objects(limit=limit)
    by_where = {}
    for r in rows:
        w = by_where.setdefault(r["location"], {"count": 0, "bytes": 0})
        w["count"] += 1
        w["bytes"] += r["object_size"]
    return {"cluster": {"summary": by_where, "total_objects": state["total_objects"],
                        "total_size_mb": sum(r["object_size"] for r in rows) / 1e6}}
