"""Spot economics on the shipped price table, and clear messages for bad input."""

import io

import pytest

from cloudlab import pricing
from cloudlab.pricing import PriceError

HEADER = ("Name,InstanceType,memory_gb,compute_units_ecu,vcpu,gpus,fpga,enhanced_networking,"
          "linux_on_demand_cost_hourly\n")


def test_shipped_table_loads_with_real_prices():
    table = pricing.load()
    assert len(table) == 53
    assert pricing.price("m4.large", table) == pytest.approx(0.10)
    assert table.loc["f1.2xlarge", "on_demand_hourly"] != table.loc["f1.2xlarge",
                                                                    "on_demand_hourly"]  # NaN
    assert pricing.data_path().parent.name == "data"


def test_unit_costs_and_savings():
    costs = pricing.unit_costs()
    row = costs.loc["c4.large"]
    assert row["per_vcpu"] == pytest.approx(0.05)
    assert row["per_ecu"] == pytest.approx(0.1 / 8)
    assert "f1.2xlarge" not in costs.index
    savings = pricing.spot_savings(0.7, hours=100)
    assert savings.loc["m4.large", "saved"] == pytest.approx(7.0)
    assert (savings["spot_total"] < savings["on_demand_total"]).all()


def test_interruptions_can_eat_the_discount():
    cheap = pricing.interruption_cost(100, 1.0, 0.7, 0.01, 0.5)
    assert cheap.spot_wins and cheap.expected_interruptions == pytest.approx(100 / 0.995 * 0.01)
    costly = pricing.interruption_cost(100, 1.0, 0.2, 0.5, 1.5)
    assert not costly.spot_wins and costly.extra_hours > 100


def test_estimate_and_its_warnings():
    est = pricing.estimate("c4.large", count=2, max_price=0.05, hours=10)
    assert est.on_demand_total == pytest.approx(2.0)
    assert est.spot_worst_total == pytest.approx(1.0)
    assert not est.warnings
    low = pricing.estimate("c4.large", count=1, max_price=0.001)
    assert "unfulfilled" in low.warnings[0]


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"max_price": -0.01}, "max price must be zero or more"),
    ({"max_price": 0.1, "count": 0}, "count must be a whole number"),
    ({"max_price": 0.1, "discount": 1.5}, "discount must be a fraction"),
    ({"max_price": 0.1, "hours": 0}, "hours must be positive"),
])
def test_bad_estimate_inputs_are_named(kwargs, needle):
    with pytest.raises(PriceError, match=needle):
        pricing.estimate("m4.large", **{"count": 1, **kwargs})


def test_unknown_type_suggests_close_matches():
    with pytest.raises(PriceError, match=r"unknown instance type 'm4.larg'.*did you mean m4.large"):
        pricing.price("m4.larg")
    with pytest.raises(PriceError, match="no on-demand price"):
        pricing.price("f1.2xlarge")


@pytest.mark.parametrize(("text", "needle"), [
    ("a,b\n1,2\n", "lacks column"),
    (HEADER, "has no rows"),
    (HEADER + "M4 Large,m4.large,8,6.5,two,0,0,Yes,0.1\n", r"row 2 \(m4.large\): column vcpu"),
    (HEADER + "M4 Large,m4.large,8,6.5,2,0,0,Yes,-1\n", "negative"),
    (HEADER + "A,m4.large,8,6.5,2,0,0,Yes,0.1\nB,m4.large,8,6.5,2,0,0,Yes,0.1\n", "twice"),
    ("", "cannot parse"),
    ('Name,"InstanceType\nx,"y,z\n', "cannot parse|lacks column"),
])
def test_malformed_csv_gets_a_clear_message(text, needle):
    with pytest.raises(PriceError, match=needle):
        pricing.load(io.StringIO(text))


def test_malformed_csv_file_is_named(tmp_path):
    bad = tmp_path / "prices.csv"
    bad.write_text(HEADER + "M4 Large,m4.large,8,6.5,2,0,0,Yes,cheap\n")
    with pytest.raises(PriceError, match=r"prices\.csv, row 2"):
        pricing.load(bad)


def test_form_builds_without_blocking_and_recomputes_on_change(capsys):
    widget = pricing.form()
    kind, count = widget.children[0].children
    assert (kind.value, count.value) == ("m4.large", 2)
    assert "2 x m4.large for 24 h" in capsys.readouterr().out  # the first estimate
    count.value = 3  # observers recompute the estimate; nothing waits for a person
    # outside a kernel the Output widget passes its text through to stdout
    shown = capsys.readouterr().out
    assert str(pricing.estimate("m4.large", 3, 0.05, 24, 0.7, pricing.load())) in shown
