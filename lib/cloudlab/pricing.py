"""Spot economics on real prices: the EC2 on-demand table, unit costs, savings, interruptions.

The shipped table (``data/ec2-on-demand-prices-2017.csv``, sources in ``data/README.md``)
holds real us-east-1 Linux on-demand prices from 2017 with vCPUs, memory and ECUs, so the
arithmetic works offline. Spot prices move; a *discount* off on-demand is the honest input.

>>> table = load()
>>> round(price("m4.large", table), 2)
0.1
>>> s = interruption_cost(hours=10, on_demand=0.10, discount=0.7, interruptions_per_hour=0.05,
...                       lost_hours_per_interruption=0.5)
>>> round(s.spot_cost, 4), round(s.on_demand_cost, 2), s.spot_wins
(0.3077, 1.0, True)
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import _project_root
from .errors import CloudlabError

PRICES_CSV = "ec2-on-demand-prices-2017.csv"
NUMERIC = ("memory_gb", "compute_units_ecu", "vcpu", "gpus", "fpga", "linux_on_demand_cost_hourly")
COLUMNS = ("Name", "InstanceType", *NUMERIC)
HOURS_PER_MONTH = 730


class PriceError(CloudlabError, ValueError):
    """A price table or a pricing input the workbook cannot use; the message says why."""


def data_path(name: str = PRICES_CSV) -> Path:
    """Where a shipped data file lives: the checkout's ``data/`` (editable install)."""
    candidates = [Path(__file__).resolve().parent / "data" / name]
    if (root := _project_root()) is not None:
        candidates.insert(0, root / "data" / name)
    for path in candidates:
        if path.exists():
            return path
    raise PriceError(f"data file {name} not found (looked in: "
                     f"{', '.join(str(p.parent) for p in candidates)}); "
                     "install the workbook from its checkout with `pip install -e .`")


def load(source: str | Path | io.StringIO | None = None) -> pd.DataFrame:
    """Read and check a price table (default: the shipped one), one row per instance type.

    Prices written ``N/A`` (types never sold on demand) become NaN; anything else that is
    not a number is rejected naming the row and column.
    """
    source = data_path() if source is None else source
    try:
        raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PriceError(f"cannot parse the price table {_name(source)}: {exc}") from None
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise PriceError(f"price table {_name(source)} lacks column(s) {', '.join(missing)}; "
                         f"expected: {', '.join(COLUMNS)}")
    if raw.empty:
        raise PriceError(f"price table {_name(source)} has no rows")
    df = raw[list(COLUMNS) + [c for c in raw.columns if c not in COLUMNS]].copy()
    for col in NUMERIC:
        text = df[col].str.strip()
        values = pd.to_numeric(text.where(~text.isin(["N/A", ""])), errors="coerce")
        bad = values.isna() & ~text.isin(["N/A", ""])
        if bad.any():
            row = int(bad.idxmax())
            raise PriceError(f"price table {_name(source)}, row {row + 2} "
                             f"({df.at[row, 'InstanceType']}): column {col} has "
                             f"{text[row]!r}, which is not a number")
        if (values < 0).any():
            row = int((values < 0).idxmax())
            raise PriceError(f"price table {_name(source)}, row {row + 2}: {col} is negative")
        df[col] = values
    if df["InstanceType"].duplicated().any():
        dup = df.loc[df["InstanceType"].duplicated(), "InstanceType"].iloc[0]
        raise PriceError(f"price table {_name(source)} lists {dup} twice")
    df = df.rename(columns={"linux_on_demand_cost_hourly": "on_demand_hourly",
                            "InstanceType": "instance_type", "Name": "name"})
    df["family"] = df["instance_type"].str.split(".").str[0]
    return df.set_index("instance_type", drop=False)


def _name(source: object) -> str:
    return Path(source).name if isinstance(source, str | Path) else "(given as text)"


def lookup(instance_type: str, table: pd.DataFrame | None = None) -> pd.Series:
    """The table row of ``instance_type``; an unknown type is rejected with close matches."""
    table = load() if table is None else table
    if instance_type not in table.index:
        close = difflib.get_close_matches(str(instance_type), list(table.index), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PriceError(f"unknown instance type {instance_type!r} (not in the price table of "
                         f"{len(table)} types){hint}")
    return table.loc[instance_type]


def price(instance_type: str, table: pd.DataFrame | None = None) -> float:
    """The on-demand hourly price in USD; types never sold on demand are rejected."""
    row = lookup(instance_type, table)
    if pd.isna(row["on_demand_hourly"]):
        raise PriceError(f"{instance_type} has no on-demand price in the table (N/A)")
    return float(row["on_demand_hourly"])


def unit_costs(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Hourly cost per vCPU, per GiB of memory and per ECU, for every priced type."""
    table = load() if table is None else table
    df = table.dropna(subset=["on_demand_hourly"]).copy()
    df["per_vcpu"] = df["on_demand_hourly"] / df["vcpu"]
    df["per_gib"] = df["on_demand_hourly"] / df["memory_gb"]
    df["per_ecu"] = df["on_demand_hourly"] / df["compute_units_ecu"]
    return df.sort_values("per_ecu")


def _check_discount(discount: float) -> float:
    if not 0 <= discount < 1:
        raise PriceError(f"discount must be a fraction in [0, 1), e.g. 0.7 for 70 % off; "
                         f"got {discount!r}")
    return float(discount)


def spot_savings(discount: float, table: pd.DataFrame | None = None,
                 hours: float = HOURS_PER_MONTH) -> pd.DataFrame:
    """What running each type for ``hours`` costs on demand and at a spot ``discount``."""
    discount = _check_discount(discount)
    df = unit_costs(table)[["instance_type", "vcpu", "memory_gb", "on_demand_hourly"]].copy()
    df["spot_hourly"] = df["on_demand_hourly"] * (1 - discount)
    df["on_demand_total"] = df["on_demand_hourly"] * hours
    df["spot_total"] = df["spot_hourly"] * hours
    df["saved"] = df["on_demand_total"] - df["spot_total"]
    return df.sort_values("saved", ascending=False)


@dataclass(frozen=True)
class InterruptionCost:
    """Expected cost of a job of ``hours`` on spot capacity that gets interrupted."""

    hours: float
    on_demand_cost: float
    spot_cost: float
    expected_interruptions: float
    extra_hours: float

    @property
    def saved(self) -> float:
        return self.on_demand_cost - self.spot_cost

    @property
    def spot_wins(self) -> bool:
        return self.spot_cost < self.on_demand_cost


def interruption_cost(hours: float, on_demand: float, discount: float,
                      interruptions_per_hour: float, lost_hours_per_interruption: float,
                      ) -> InterruptionCost:
    """Expected spot cost when interruptions (a Poisson rate) each throw work away.

    Every interruption loses ``lost_hours_per_interruption`` of work (time since the last
    checkpoint plus restart), which must be paid for again: the expected paid hours are
    ``hours / (1 - rate * lost)``. Spot wins while that stays below the discount's margin.
    """
    discount = _check_discount(discount)
    for label, value in (("hours", hours), ("on_demand", on_demand),
                         ("interruptions_per_hour", interruptions_per_hour),
                         ("lost_hours_per_interruption", lost_hours_per_interruption)):
        if value < 0:
            raise PriceError(f"{label} must not be negative; got {value!r}")
    waste = interruptions_per_hour * lost_hours_per_interruption
    if waste >= 1:
        raise PriceError(f"with {interruptions_per_hour}/h interruptions each losing "
                         f"{lost_hours_per_interruption} h the job never finishes; checkpoint "
                         "more often")
    paid = hours / (1 - waste)
    return InterruptionCost(hours, hours * on_demand, paid * on_demand * (1 - discount),
                            paid * interruptions_per_hour, paid - hours)


@dataclass(frozen=True)
class Estimate:
    """A cost estimate for ``count`` instances of one type over ``hours``."""

    instance_type: str
    count: int
    hours: float
    on_demand_hourly: float
    max_price: float
    typical_spot_hourly: float

    @property
    def on_demand_total(self) -> float:
        return self.on_demand_hourly * self.count * self.hours

    @property
    def spot_typical_total(self) -> float:
        return min(self.typical_spot_hourly, self.max_price) * self.count * self.hours

    @property
    def spot_worst_total(self) -> float:
        """You never pay more than your max price (nor, on AWS, more than on-demand)."""
        return min(self.max_price, self.on_demand_hourly) * self.count * self.hours

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.max_price < self.typical_spot_hourly:
            out.append(f"max price ${self.max_price:.4f}/h is below the typical spot price "
                       f"${self.typical_spot_hourly:.4f}/h: the request would likely wait "
                       "unfulfilled")
        if self.max_price > self.on_demand_hourly:
            out.append(f"max price above on-demand (${self.on_demand_hourly:.4f}/h): AWS "
                       "never charges more than on-demand; on-demand may be simpler")
        return out

    def text(self) -> str:
        lines = [f"{self.count} x {self.instance_type} for {self.hours:g} h",
                 f"  on demand:        ${self.on_demand_total:,.2f}",
                 f"  spot, typical:    ${self.spot_typical_total:,.2f}",
                 f"  spot, worst case: ${self.spot_worst_total:,.2f} (at your max price)"]
        return "\n".join(lines + [f"  warning: {w}" for w in self.warnings])

    def __str__(self) -> str:
        return self.text()


def estimate(instance_type: str, count: int, max_price: float, hours: float = 24,
             discount: float = 0.7, table: pd.DataFrame | None = None) -> Estimate:
    """Estimate on-demand vs spot cost; bad inputs are rejected with the reason.

    >>> print(estimate("c4.large", count=2, max_price=0.05, hours=10))
    2 x c4.large for 10 h
      on demand:        $2.00
      spot, typical:    $0.60
      spot, worst case: $1.00 (at your max price)
    """
    if max_price is None or max_price < 0:
        raise PriceError(f"max price must be zero or more USD per hour; got {max_price!r}")
    if not isinstance(count, int) or count < 1:
        raise PriceError(f"instance count must be a whole number >= 1; got {count!r}")
    if hours <= 0:
        raise PriceError(f"hours must be positive; got {hours!r}")
    discount = _check_discount(discount)
    od = price(instance_type, table)
    return Estimate(instance_type, count, float(hours), od, float(max_price),
                    od * (1 - discount))


def form(table: pd.DataFrame | None = None, discount: float = 0.7):
    """An ipywidgets form: pick type, count, max price and hours, see the cost estimate.

    Returns the widget (display it); nothing blocks, so headless runs pass through.
    """
    import ipywidgets as w

    table = load() if table is None else table
    priced = sorted(table.dropna(subset=["on_demand_hourly"]).index)
    kind = w.Dropdown(options=priced, value="m4.large" if "m4.large" in priced else priced[0],
                      description="type")
    count = w.IntSlider(value=2, min=1, max=20, description="count")
    max_price = w.BoundedFloatText(value=0.05, min=0, max=100, step=0.01,
                                   description="max $/h")
    hours = w.IntSlider(value=24, min=1, max=24 * 31, description="hours")
    out = w.Output()

    def update(*_: object) -> None:
        out.clear_output()
        with out:
            try:
                print(estimate(kind.value, count.value, max_price.value, hours.value,
                               discount, table))
            except PriceError as exc:
                print(f"cannot estimate: {exc}")

    for widget in (kind, count, max_price, hours):
        widget.observe(update, names="value")
    update()
    return w.VBox([w.HBox([kind, count]), w.HBox([max_price, hours]), out])
