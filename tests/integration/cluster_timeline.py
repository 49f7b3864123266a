"""Which app task ran on which node, which node held the floating address and which was the
Raft leader, over time, as Swarm and the nodes reported it: a table and a chart."""

import threading
import time
from dataclasses import dataclass, field


@dataclass
class TaskSpan:
    """One app task while Swarm reported it running: its slot, node, address and when."""

    task_id: str
    slot: int
    node: str
    address: str
    first_seen: float
    last_seen: float


@dataclass
class Timeline:
    """Polls the managers for the service's tasks in a thread; notes events and traffic.

    `managers` is a cluster_swarm.Managers; `holder` returns the node holding the floating
    address (or None). Each poll also notes the holder and the Raft leader in `roles`.
    """

    managers: object
    service: str
    holder: object = None
    began: float = field(default_factory=time.monotonic)
    spans: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    traffic: list = field(default_factory=list)
    roles: list = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="timeline", daemon=True)
        self._nodes = {}

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def node_name(self, node_id):
        if node_id not in self._nodes:
            # The node's hostname (gwc-n2): cluster.sh gives each engine its own UTS name.
            for node in self.managers.nodes():
                self._nodes[node["ID"]] = node["Description"]["Hostname"]
        return self._nodes.get(node_id, node_id[:10])

    def running(self):
        """The service's running tasks now: task id -> (slot, node, overlay address)."""
        found = {}
        for task in self.managers.tasks(self.service):
            if task["Status"]["State"] != "running" or task["DesiredState"] != "running":
                continue
            addresses = [
                address.split("/")[0]
                for network in task.get("NetworksAttachments", [])
                for address in network["Addresses"]
            ]
            found[task["ID"]] = (
                task["Slot"],
                self.node_name(task["NodeID"]),
                addresses[0] if addresses else "",
            )
        return found

    def _poll(self):
        while not self._stop.is_set():
            try:
                now = time.monotonic() - self.began
                if self.holder is not None:
                    holder = self.holder()
                    self.roles.append((now, holder, self.managers.leader()))
                for task_id, (slot, node, address) in self.running().items():
                    span = self.spans.get(task_id)
                    if span is None:
                        self.spans[task_id] = TaskSpan(task_id, slot, node, address, now, now)
                    else:
                        span.last_seen = now
            except Exception:  # noqa: BLE001 - the manager may be slow; the next poll sees it
                pass
            self._stop.wait(0.5)

    def event(self, label, at=None):
        """Note an event now (or at monotonic time `at`); return its time on the timeline
        (seconds since it began)."""
        at = (time.monotonic() if at is None else at) - self.began
        self.events.append((at, label))
        return at

    def add_traffic(self, traffic):
        """Keep a finished SteadyTraffic block for the chart."""
        self.traffic.append(traffic)

    def placement(self, at=None):
        """node -> sorted slots of the tasks running at `at` (default: the latest poll)."""
        if at is None:
            at = max((span.last_seen for span in self.spans.values()), default=0)
        nodes = {}
        for span in self.spans.values():
            if span.first_seen <= at <= span.last_seen:
                nodes.setdefault(span.node, []).append(span.slot)
        return {node: sorted(slots) for node, slots in nodes.items()}


def placement_table(columns, nodes, service_short="app"):
    """A text table: one row per node, one column per moment, the task slots in each cell."""
    header = ["node", *columns]
    rows = []
    for node in nodes:
        cells = []
        for placement in columns.values():
            if placement is None:
                cells.append("")
            elif node in placement:
                cells.append(" ".join(f"{service_short}.{slot}" for slot in placement[node]))
            else:
                cells.append("-")
        rows.append([node, *cells])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def role_segments(roles):
    """From (time, holder, leader) samples: for each role, [(node, start, end)] while it held."""
    lanes = ([], [])
    for at, *holders in roles:
        for segments, node in zip(lanes, holders, strict=True):
            if segments and segments[-1][0] == node:
                segments[-1][2] = at
            else:
                segments.append([node, at, at])
    return [[tuple(segment) for segment in segments if segment[0]] for segments in lanes]


def draw(timeline, nodes, path, title):
    """Write a PNG: task spans coloured by node above, requests per second below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(
        zip(nodes, ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"], strict=False)
    )
    spans = sorted(timeline.spans.values(), key=lambda span: (span.slot, span.first_seen))
    slots = sorted({span.slot for span in spans})
    figure, (tasks_axis, traffic_axis) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}
    )
    # Two lanes above the tasks: who held the floating address, who led Raft.
    lanes = ["floating address", "Raft leader"]
    for lane, segments in enumerate(role_segments(timeline.roles)):
        for node, start, end in segments:
            tasks_axis.barh(
                lane,
                max(end - start, 0.5),
                left=start,
                height=0.6,
                color=colours.get(node, "grey"),
                edgecolor="white",
            )
    for span in spans:
        row = len(lanes) + slots.index(span.slot)
        tasks_axis.barh(
            row,
            max(span.last_seen - span.first_seen, 0.5),
            left=span.first_seen,
            height=0.6,
            color=colours.get(span.node, "grey"),
            edgecolor="white",
        )
    tasks_axis.set_yticks(
        range(len(lanes) + len(slots)), [*lanes, *(f"app.{slot}" for slot in slots)]
    )
    tasks_axis.invert_yaxis()
    tasks_axis.set_ylabel("role, task slot")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[node]) for node in nodes]
    tasks_axis.legend(handles, nodes, title="on node", loc="upper left", bbox_to_anchor=(1, 1))
    figure.suptitle(title, fontsize=10, y=1.0)
    figure.subplots_adjust(top=0.8)

    # One line per block of traffic: no line where none was sent (the node's return).
    failed_total = 0
    for number, block in enumerate(timeline.traffic):
        start, end = (int(t - timeline.began) for t in (block.began, block.ended))
        answered = [0] * (end - start + 1)
        failed = [0] * (end - start + 1)
        for outcome in block.outcomes:
            second = min(int(outcome.finished - timeline.began), end) - start
            (answered if outcome.ok else failed)[second] += 1
        failed_total += sum(failed)
        seconds = range(start, end + 1)
        # The first and last seconds are partial: leave them out rather than draw a false drop.
        traffic_axis.plot(
            seconds[1:-1],
            answered[1:-1],
            color="#4c72b0",
            linewidth=0.8,
            label="answered (2xx)" if number == 0 else None,
        )
        if any(failed):
            traffic_axis.bar(seconds, failed, color="#c44e52")
    traffic_axis.plot([], [], color="#c44e52", label=f"failed: {failed_total}")
    traffic_axis.set_ylim(bottom=0)
    traffic_axis.set_ylabel("requests / s")
    traffic_axis.set_xlabel("seconds")
    traffic_axis.legend(loc="upper left", bbox_to_anchor=(1, 1))

    for at, _ in timeline.events:
        for axis in (tasks_axis, traffic_axis):
            axis.axvline(at, color="black", linewidth=0.6, linestyle=":")
    for number, (at, label) in enumerate(timeline.events):
        tasks_axis.annotate(
            label,
            (at, 1),
            xycoords=("data", "axes fraction"),
            # Above the chart; events close together alternate sides of their line.
            xytext=(2 if number % 2 else -9, 3),
            textcoords="offset points",
            rotation=90,
            fontsize=7,
            va="bottom",
        )
    figure.tight_layout()
    # bbox "tight" takes in the event labels above the chart.
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
