"""What ``haneul-ring-builder`` prints: the builder summary, device tables, reports.

Kept apart from ``ring.cli`` so the command logic reads without the column widths.
"""

# A device with partitions but no weight has no ideal; show it as far off as Swift does.
OFF_THE_SCALE = 999.99


def device_table(builder, devs):
    """The devices as aligned columns: id region zone ip:port device weight parts ..."""
    counts = builder.dev_parts()
    balances = builder.dev_balance()
    header = ("id", "region", "zone", "ip:port", "device", "weight", "partitions", "balance")
    header += ("meta",)
    rows = [header]
    for dev in devs:
        parts = counts.get(dev["id"], 0)
        balance = balances.get(dev["id"], OFF_THE_SCALE if parts else 0.0)
        rows.append(
            (
                str(dev["id"]),
                str(dev["region"]),
                str(dev["zone"]),
                _address(dev),
                dev["device"],
                f"{dev['weight']:.2f}",
                str(parts),
                f"{balance:.2f}",
                dev.get("meta") or "",
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if col in (3, 4, 8) else cell.rjust(width)
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _address(dev):
    ip = dev["ip"]
    return f"[{ip}]:{dev['port']}" if ":" in ip else f"{ip}:{dev['port']}"


def describe(path, builder):
    """The default view: settings, balance and dispersion, then every device."""
    devs = [d for d in builder.devs if d is not None]
    regions = {d["region"] for d in devs}
    zones = {(d["region"], d["zone"]) for d in devs}
    lines = [
        f"{path}",
        f"{1 << builder.part_power} partitions (part power {builder.part_power}), "
        f"{builder.replicas:.6g} replicas, {len(regions)} regions, {len(zones)} zones, "
        f"{len(devs)} devices",
        f"min_part_hours {builder.min_part_hours} ({_hold(builder)}), "
        f"overload {builder.overload * 100:.2f}% ({builder.overload:.6f})",
    ]
    if builder.ever_rebalanced:
        lines.append(
            f"balance {builder.get_balance():.2f}, dispersion {builder.get_dispersion():.2f}"
        )
    else:
        lines.append("not rebalanced yet: no partitions are assigned")
    if builder.pending_removal:
        ids = ", ".join(f"d{i}" for i in builder.pending_removal)
        lines.append(f"removed, leaving at the next rebalance: {ids}")
    if devs:
        lines.append("devices:")
        lines.extend("  " + line for line in device_table(builder, devs).splitlines())
    else:
        lines.append("no devices yet: add some with 'add r1z1-<ip>:<port>/<device> <weight>'")
    return "\n".join(lines)


def _hold(builder):
    remaining = builder.min_part_hours_remaining()
    if remaining:
        return f"{remaining} h before every partition may move again"
    return "any partition may move now"


def parts_table(rows):
    """list_parts output: partition and how many of its replicas are on the devices."""
    lines = ["Partition   Matches"]
    lines.extend(f"{part:>9}   {count:>7}" for part, count in rows)
    return "\n".join(lines)


def dispersion(report):
    """The builder's dispersion report: a summary line, then one row per tier."""
    tiers = report["tiers"]
    lines = [
        f"Dispersion is {report['dispersion']:.2f}: {report['parts_at_risk']} of "
        f"{report['parts']} partitions have replicas closer together than the devices "
        f"allow ({report['replicas']:g} replicas)"
    ]
    if not tiers:
        return "\n".join(lines)
    width = max(len("tier"), *(len(name) for name in tiers))
    most = max(len(tier["replicas"]) for tier in tiers.values())
    counts_head = " ".join(f"{i:>6}" for i in range(most))
    lines.append(
        f"{'tier':<{width}}  {'level':<6}  {'max':>3}  {'placed':>8}  {'at risk':>7}  "
        f"partitions with 0, 1, ... replicas here"
    )
    lines.append(f"{'':<{width}}  {'':<6}  {'':>3}  {'':>8}  {'':>7}  {counts_head}")
    for name, tier in tiers.items():
        counts = " ".join(f"{n:>6}" for n in tier["replicas"])
        lines.append(
            f"{name:<{width}}  {tier['level']:<6}  {tier['max_replicas']:>3}  "
            f"{tier['placed_replicas']:>8}  {tier['parts_at_risk']:>7}  {counts}"
        )
    return "\n".join(lines)
