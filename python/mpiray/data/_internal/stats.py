"""Dataset.stats(): per-operator execution statistics in Ray Data's format."""

from .. import block as B


def _t(s):
    if s < 1e-3:
        return f"{s * 1e6:.2f}us"
    if s < 1:
        return f"{s * 1e3:.2f}ms"
    return f"{s:.2f}s"


def _mmmt(vals, fmt):
    if not vals:
        return None
    return f"{fmt(min(vals))} min, {fmt(max(vals))} max, {fmt(sum(vals) / len(vals))} mean, {fmt(sum(vals))} total"


def _num(v):
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def format_stats(ex):
    from .executor import InputDataBuffer
    lines = []
    k = 0
    total_rows = ex.root.rows_out
    for op in ex.ops:
        if isinstance(op, InputDataBuffer):
            continue
        k += 1
        st = op.stats
        wall = (st.end or 0) - (st.start or 0) if st.start is not None else 0.0
        ntasks = len(st.task_stats)
        nblocks = len(st.block_rows)
        lines.append(f"Operator {k} {op.name}: {ntasks} tasks executed, {nblocks} blocks produced in {wall:.2f}s")
        ts = st.task_stats
        if ts:
            lines.append(f"* Remote wall time: {_mmmt([t.wall_s for t in ts], _t)}")
            lines.append(f"* Remote cpu time: {_mmmt([t.cpu_s for t in ts], _t)}")
            lines.append(f"* UDF time: {_mmmt([t.udf_s for t in ts], _t)}")
        for extra in st.extra:
            lines.append(f"* {extra}")
        if st.block_rows:
            lines.append(f"* Output num rows per block: {_mmmt(st.block_rows, _num)}")
            lines.append(f"* Output size bytes per block: {_mmmt(st.block_bytes, _num)}")
        if st.task_rows:
            lines.append(f"* Output rows per task: {min(st.task_rows)} min, {max(st.task_rows)} max, "
                         f"{sum(st.task_rows) / len(st.task_rows):.0f} mean, {len(st.task_rows)} tasks used")
        if ts:
            per_node = {}
            for t in ts:
                per_node[t.node] = per_node.get(t.node, 0) + 1
            c = list(per_node.values())
            lines.append(f"* Tasks per node: {min(c)} min, {max(c)} max, {sum(c) / len(c):.0f} mean; "
                         f"{len(c)} nodes used")
        rows_out = sum(st.block_rows)
        lines.append("* Operator throughput:")
        lines.append(f"\t* Total input num rows: {st.input_rows} rows")
        lines.append(f"\t* Total output num rows: {rows_out} rows")
        lines.append(f"\t* Ray Data throughput: {rows_out / wall if wall > 0 else 0.0} rows/s")
        if ts:
            busy = sum(t.wall_s for t in ts)
            lines.append(f"\t* Estimated single task throughput: {rows_out / busy if busy > 0 else 0.0} rows/s")
        lines.append("")
    dur = (ex.end_time or 0) - (ex.start_time or 0)
    lines.append("Dataset throughput:")
    lines.append(f"\t* Ray Data throughput: {total_rows / dur if dur > 0 else 0.0} rows/s")
    lines.append(f"\t* Peak object store use: {B.nbytes_str(ex.peak_bytes)} (budget {B.nbytes_str(ex.budget)})")
    return "\n".join(lines) + "\n"
