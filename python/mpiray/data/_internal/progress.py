"""Progress of an execution in the console, as Ray Data shows it.

On a terminal: one live bar for the dataset and one per operator (rows done out of rows
expected, rows/s, tasks, queued blocks, object store use), redrawn in place on stderr.
Otherwise (a log file, a pipe): the execution plan when it starts, a summary every
``DataContext.progress_log_interval_s`` seconds, and the time it took when it ends.
"""

import sys
import time

from .. import block as B


def _fmt_time(s):
    s = int(s)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _fmt_num(n):
    n = float(n)
    for unit in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def _bar(frac, width=20):
    frac = min(max(frac, 0.0), 1.0)
    full = int(frac * width)
    parts = " ▏▎▍▌▋▊▉"
    rem = int((frac * width - full) * 8)
    return "█" * full + (parts[rem] if full < width else "") + " " * max(0, width - full - 1)


class ProgressManager:
    def __init__(self, ex, enabled):
        self.ex = ex
        self.enabled = enabled
        self.tty = enabled and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.lines = 0
        self.last = 0.0
        self.last_log = 0.0
        self.t0 = None

    def _ops(self):
        from .executor import InputDataBuffer
        return [op for op in self.ex.ops if not isinstance(op, InputDataBuffer)]

    def plan_str(self):
        from .executor import ActorMapOp, AllToAllOp, InputDataBuffer, LimitOp, TaskMapOp, UnionOp
        kinds = {InputDataBuffer: "InputDataBuffer", TaskMapOp: "TaskPoolMapOperator",
                 ActorMapOp: "ActorPoolMapOperator", LimitOp: "LimitOperator", UnionOp: "UnionOperator",
                 AllToAllOp: "AllToAllOperator"}
        parts = []
        for op in self.ex.ops:
            kind = next((v for k, v in kinds.items() if isinstance(op, k)), type(op).__name__)
            parts.append(f"{kind}[{op.name}]")
        if not any(isinstance(op, InputDataBuffer) for op in self.ex.ops):
            parts.insert(0, "InputDataBuffer[Input]")
        return " -> ".join(parts)

    def start(self):
        self.t0 = time.perf_counter()
        if not self.enabled:
            return
        if self.ex.ctx.log_execution_plan:
            self._log(f"Starting execution of Dataset {self.ex.dataset_name}.")
            self._log(f"Execution plan of Dataset {self.ex.dataset_name}: {self.plan_str()}")
        self.last_log = self.t0

    def _log(self, msg):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp}\tINFO mpiray.data -- {msg}", file=sys.stderr, flush=True)

    def _rows_total(self, op):
        return op.total_rows_hint

    def _resources(self):
        running = sum(len(getattr(op, "tasks", {})) for op in self.ex.ops)
        actors = sum(len(getattr(op, "actors", [])) for op in self.ex.ops)
        cpus = min(self.ex.cpus, running + actors)
        return (f"Active & requested resources: {cpus:g}/{self.ex.cpus:g} CPU, "
                f"{B.nbytes_str(self.ex.usage())}/{B.nbytes_str(self.ex.budget)} object store")

    def _op_line(self, op, elapsed):
        total = self._rows_total(op)
        done = op.rows_out + (0 if op is not self.ex.root else 0)
        rate = done / elapsed if elapsed > 0 else 0.0
        if op.done:
            total = done
        frac = (done / total) if total else (1.0 if op.done else 0.0)
        desc = op.progress_str()
        desc = (desc + "; " if desc else "") + (f"Queued blocks: {op.queued_blocks()}; Resources: "
                                                 f"{B.nbytes_str(op.held_bytes())} object store")
        tot = _fmt_num(total) if total else "?"
        return (f"- {op.name}: {desc}: {frac * 100:3.0f}%|{_bar(frac)}| {_fmt_num(done)}/{tot} "
                f"[{_fmt_time(elapsed)}, {_fmt_num(rate)} row/s]")

    def _render(self, final=False):
        elapsed = time.perf_counter() - self.t0
        root = self.ex.root
        done = root.rows_out
        total = root.total_rows_hint
        if root.done:
            total = done
        frac = (done / total) if total else (1.0 if root.done else 0.0)
        rate = done / elapsed if elapsed > 0 else 0.0
        tot = _fmt_num(total) if total else "?"
        head = (f"Running Dataset: {self.ex.dataset_name}. {self._resources()}: {frac * 100:3.0f}%|{_bar(frac)}| "
                f"{_fmt_num(done)}/{tot} [{_fmt_time(elapsed)}, {_fmt_num(rate)} row/s]")
        lines = [head]
        if self.ex.ctx.enable_operator_progress_bars:
            lines += [self._op_line(op, elapsed) for op in self._ops()]
        return lines

    def update(self):
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self.last < 0.2:
                return
            self.last = now
            self._draw(self._render())
        elif now - self.last_log >= self.ex.ctx.progress_log_interval_s:
            self.last_log = now
            first = f"======= Running Dataset: {self.ex.dataset_name} ======="
            self._log(first)
            for line in self._render():
                self._log(line)
            self._log("=" * len(first))

    def _draw(self, lines):
        out = sys.stderr
        if self.lines:
            out.write(f"\x1b[{self.lines}F")
        width = 160
        for line in lines:
            out.write("\x1b[2K" + line[:width] + "\n")
        out.flush()
        self.lines = len(lines)

    def close(self, ok=True):
        if not self.enabled:
            return
        elapsed = time.perf_counter() - (self.t0 or time.perf_counter())
        if self.tty:
            self._draw(self._render(final=True))
        mark = "✔️ " if ok else "✖️ "
        state = "execution finished" if ok else "execution ended early"
        self._log(f"{mark} Dataset {self.ex.dataset_name} {state} in {elapsed:.2f} seconds")
