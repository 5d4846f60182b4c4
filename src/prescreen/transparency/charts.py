"""Charts of the transparency metrics as PNG or SVG, drawn with matplotlib's Agg backend on
figures that belong to no global state (safe in server threads)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMATS = ("png", "svg")
SIZE_INCHES = (8.0, 4.0)
DPI = 100  # PNGs are 800 x 400 pixels
PALETTE = {
    "allow": "#4c9a2a",
    "hold": "#e0a100",
    "block": "#c0392b",
    "automatic": "#2e86c1",
    "review": "#8e44ad",
    "appeal": "#16a085",
    "removal_order": "#c0392b",
    "upheld": "#7f8c8d",
    "reversed": "#e67e22",
    "pending": "#bdc3c7",
}
OTHER_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f"]


def _figure_class() -> type:
    """matplotlib, imported on first use: it adds ~30 MB to every server process otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "prescreen"  # stable element ids in SVG output
    from matplotlib.figure import Figure

    return Figure


def _stacked(ax: Axes, buckets: list[str], series: dict[str, list[int]]) -> None:
    bottom = [0] * len(buckets)
    positions = list(range(len(buckets)))
    for index, (name, values) in enumerate(series.items()):
        colour = PALETTE.get(name, OTHER_COLOURS[index % len(OTHER_COLOURS)])
        ax.bar(positions, values, bottom=bottom, label=name.replace("_", " "), color=colour)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    step = max(1, -(-len(buckets) // 7))  # at most 7 labels
    ax.set_xticks(positions[::step], [b[5:] if len(b) == 10 else b for b in buckets][::step])
    ax.set_ylabel("count")
    if series:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    if not any(bottom):
        ax.text(0.5, 0.5, "nothing recorded in this period", ha="center", transform=ax.transAxes)


def decisions_by_outcome(ax: Axes, m: dict[str, Any]) -> None:
    d = m["decisions"]
    _stacked(ax, d["buckets"], d["by_outcome"])
    ax.set_title(f"Decisions by outcome ({d['total']} in all, per {m['period']['bucket']})")


def restrictive_by_label(ax: Axes, m: dict[str, Any]) -> None:
    d = m["decisions"]
    _stacked(ax, d["buckets"], d["restrictive_by_label"])
    ax.set_title("Holds and blocks by label")


def restrictive_by_source(ax: Axes, m: dict[str, Any]) -> None:
    d = m["decisions"]
    share = d["totals"]["automated_share"]
    _stacked(ax, d["buckets"], d["restrictive_by_source"])
    ax.set_title(
        "Holds and blocks by source" + (f" ({share:.0%} automated)" if share is not None else "")
    )


def review_sla(ax: Axes, m: dict[str, Any]) -> None:
    sla = m["review_sla"]
    names = list(sla["by_priority"])
    within = [sla["by_priority"][n]["within_sla"] for n in names]
    breached = [sla["by_priority"][n]["breached"] for n in names]
    ax.barh(names, within, color="#4c9a2a", label="within SLA")
    ax.barh(names, breached, left=within, color="#c0392b", label="SLA breached")
    for index, name in enumerate(names):
        hours = sla["by_priority"][name]["median_hours"]
        if hours is not None:
            ax.text(within[index] + breached[index], index, f"  median {hours:.1f} h", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("cases decided")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    share = sla["within_sla_share"]
    ax.set_title(
        "Review cases decided within their SLA"
        + (f" ({share:.0%})" if share is not None else " (none decided)")
    )


def appeals(ax: Axes, m: dict[str, Any]) -> None:
    a = m["appeals"]
    _stacked(ax, a["buckets"], a["by_outcome"])
    rate = a["reversal_rate"]
    ax.set_title(
        f"Appeals ({a['filed']} filed"
        + (f", {rate:.0%} of decided reversed)" if rate is not None else ")")
    )


def removal_time(ax: Axes, m: dict[str, Any]) -> None:
    r = m["removal_orders"]
    rows = r["orders"]
    minutes = [row["minutes_to_removal"] or 0 for row in rows]
    colours = [
        "#bdc3c7"
        if row["minutes_to_removal"] is None
        else "#4c9a2a"
        if row["minutes_to_removal"] <= row["deadline_minutes"]
        else "#c0392b"
        for row in rows
    ]
    ax.bar(range(len(rows)), minutes, color=colours)
    deadline = rows[0]["deadline_minutes"] if rows else 60
    ax.axhline(deadline, color="#333333", linestyle="--", linewidth=1)
    ax.text(1.0, deadline, f"{deadline:g}-minute deadline", va="bottom", ha="right",
            fontsize="small", transform=ax.get_yaxis_transform())  # fmt: skip
    ax.set_xticks(range(len(rows)), [row["received_at"][5:10] for row in rows])
    ax.set_ylabel("minutes from receipt to removal")
    ax.set_title(f"Removal orders: time to removal ({r['executed']} of {r['received']} executed)")
    if not rows:
        ax.text(0.5, 0.5, "no removal orders in this period", ha="center", transform=ax.transAxes)


CHARTS: dict[str, Callable[[Axes, dict[str, Any]], None]] = {
    "decisions_by_outcome": decisions_by_outcome,
    "restrictive_by_label": restrictive_by_label,
    "restrictive_by_source": restrictive_by_source,
    "review_sla": review_sla,
    "appeals": appeals,
    "removal_time": removal_time,
}


def render(name: str, metrics: dict[str, Any], fmt: str = "png") -> bytes:
    """One chart as PNG (800 x 400) or SVG bytes."""
    if name not in CHARTS or fmt not in FORMATS:
        raise KeyError(name if name not in CHARTS else fmt)
    figure = _figure_class()(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    CHARTS[name](ax, metrics)
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    figure.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    return buffer.getvalue()
