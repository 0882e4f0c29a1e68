"""``haneul-ring-builder`` (also ``haneul ring``): plan rings from the shell.

Same grammar as ``swift-ring-builder``: ``<builder_file> <command> [args...]``. Exit
codes: 0 done, 1 done with a warning, 2 error (one line on stderr, builder untouched:
the builder file is only saved after a command has fully succeeded).
"""

import argparse
import os
import sys

from ring import cli_report
from ring.builder import BuilderError, RingBuilder
from ring.devices import DeviceSpecError, format_device, normalize_ip, parse_add_value
from ring.ringfile import RingFileError

EXIT_OK, EXIT_WARNING, EXIT_ERROR = 0, 1, 2
PROG = "haneul-ring-builder"
# Swift's rule of thumb: a ring within 1% of its ideal is balanced.
BALANCE_WARN_PERCENT = 1.0

USAGE = f"""\
usage: {PROG} <builder_file> [<command> [args...]]    (also: haneul ring ...)

  <builder_file>                       show the builder: settings, balance, devices
  create <part_power> <replicas> <min_part_hours>
                                       start a new builder file (refuses to overwrite)
  add <r1z1-127.0.0.1:6200/d1_meta> <weight> [<dev> <weight> ...]
  add --region 1 --zone 1 --ip 127.0.0.1 --port 6200 --device d1 --weight 100 [--meta x]
  remove <search> [<search> ...] [--yes]
                                       take devices out (their parts move at rebalance)
  set_weight <search> <weight> [<search> <weight> ...] [--yes]
  set_replicas <replicas>              may be fractional, e.g. 2.5
  set_overload <fraction | percent%>   e.g. 0.1 or 10%
  set_min_part_hours <hours>
  rebalance [--seed N] [--force]       reassign partitions; writes the builder and ring
  write_ring                           write <name>.ring.gz beside <name>.builder
  list_parts <search> [<search> ...]   partitions with replicas on the matching devices
  search <search>                      show the matching devices
  dispersion                           how spread out each partition's replicas are
  validate                             check the builder's internal consistency
  pretend_min_part_hours_passed        let the next rebalance move any partition

<search> picks devices: d<id>, r<region>, z<zone>, -<ip>, :<port>, /<device>, _<meta>,
or any combination such as r1z2-10.0.0.1:6200/sdb (see the README).
exit codes: 0 done, 1 done with a warning, 2 error
"""


class CommandError(Exception):
    """A bad argument or state: reported as one line on stderr, exit code 2."""


class _Options(argparse.ArgumentParser):
    """argparse for a command's --options, but errors become one CommandError line."""

    def __init__(self, command):
        super().__init__(prog=command, add_help=False, allow_abbrev=False)

    def error(self, message):
        raise CommandError(f"{self.prog}: {message}")


def main(argv=None):
    """Run one ring-builder command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv) or argv[:1] == ["help"]:
        print(USAGE, end="")
        return EXIT_OK
    if not argv:
        return _fail(f"no builder file given; usage: {PROG} <builder_file> <command> (see --help)")
    path, command, args = argv[0], (argv[1] if len(argv) > 1 else None), argv[2:]
    handler = COMMANDS.get(command)
    if handler is None:
        return _fail(f"unknown command {command!r}; see {PROG} --help")
    try:
        return handler(path, args)
    except (CommandError, BuilderError, DeviceSpecError, RingFileError) as err:
        return _fail(str(err))
    except BrokenPipeError:
        # Output piped into `head` and cut short: not an error. Commands save before they
        # print, so nothing is lost; point stdout at /dev/null so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as err:
        # Unreadable directory, full disk, permissions: the operator's to fix, not a bug.
        where = f" {err.filename}" if err.filename else ""
        return _fail(f"cannot access{where}: {err.strerror or err}")


def _fail(message):
    # One line, always: messages from lower layers may carry newlines.
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_ERROR


# -- argument helpers -----------------------------------------------------------------


def _int(text, what, minimum):
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise CommandError(f"{what} must be an integer, got {text!r}") from None
    if value < minimum:
        raise CommandError(f"{what} must be >= {minimum}, got {value}")
    return value


def _float(text, what, minimum=None):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise CommandError(f"{what} must be a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise CommandError(f"{what} must be a finite number, got {text!r}")
    if minimum is not None and value < minimum:
        raise CommandError(f"{what} must be >= {minimum}, got {text}")
    return value


def _expect(args, count, usage):
    if len(args) != count:
        raise CommandError(f"usage: {PROG} <builder_file> {usage}")


def _split_flag(args, flag):
    """Remove a boolean flag from positional args; returns (present, rest)."""
    rest = [arg for arg in args if arg != flag]
    return len(rest) != len(args), rest


def _pairs(args, usage):
    if not args or len(args) % 2:
        raise CommandError(f"usage: {PROG} <builder_file> {usage}")
    return list(zip(args[0::2], args[1::2], strict=True))


def _load(path):
    if not os.path.exists(path):
        raise CommandError(f"builder file not found: {path}")
    return RingBuilder.load(path)


def _match(builder, search, allow_many):
    devs = builder.search_devs(search)
    if not devs:
        raise CommandError(f"no device matches {search!r}")
    if len(devs) > 1 and not allow_many:
        raise CommandError(
            f"{search!r} matches {len(devs)} devices "
            f"({', '.join(format_device(d) for d in devs[:3])}{', ...' if len(devs) > 3 else ''});"
            " add --yes to act on all of them"
        )
    return devs


def ring_path_for(builder_path):
    """``object.builder`` -> ``object.ring.gz``, as swift-ring-builder names it."""
    base = builder_path[: -len(".builder")] if builder_path.endswith(".builder") else builder_path
    return base + ".ring.gz"


# -- commands -------------------------------------------------------------------------


def cmd_show(path, args):
    """No command: pretty-print the builder."""
    _expect(args, 0, "")
    builder = _load(path)
    print(cli_report.describe(path, builder))
    return EXIT_OK


def cmd_create(path, args):
    """create <part_power> <replicas> <min_part_hours>"""
    _expect(args, 3, "create <part_power> <replicas> <min_part_hours>")
    part_power = _int(args[0], "part power", 1)  # the builder knows the upper limit
    replicas = _float(args[1], "replicas", 1)
    min_part_hours = _int(args[2], "min_part_hours", 0)
    if os.path.lexists(path):
        raise CommandError(f"{path} already exists; remove it first to start a new ring")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise CommandError(f"directory {folder} does not exist")
    builder = RingBuilder(part_power, replicas, min_part_hours)
    builder.save(path)
    print(
        f"Created {path}: {1 << part_power} partitions, {replicas:g} replicas, "
        f"min_part_hours {min_part_hours}"
    )
    return EXIT_OK


def _parse_long_add(args):
    parser = _Options("add")
    parser.add_argument("--region", type=int, default=1)
    parser.add_argument("--zone", type=int, required=True)
    parser.add_argument("--ip", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--weight", required=True)
    parser.add_argument("--meta", default="")
    opts = parser.parse_args(args)
    try:
        ip = normalize_ip(opts.ip)
    except ValueError as err:
        raise CommandError(f"add: --ip: {err}") from None
    if not 0 < opts.port < 65536:
        raise CommandError(f"add: --port {opts.port} is out of range 1-65535")
    if not opts.device or "/" in opts.device:
        raise CommandError(f"add: --device {opts.device!r} is not a device name")
    dev = {
        "region": _int(opts.region, "region", 0),
        "zone": _int(opts.zone, "zone", 0),
        "ip": ip,
        "port": opts.port,
        "device": opts.device,
        "meta": opts.meta,
    }
    return [(dev, _float(opts.weight, "weight", 0))]


def cmd_add(path, args):
    """add <dev> <weight> [...] | add --region .. --zone .. --ip .. --port .. --device .."""
    if args and args[0].startswith("--"):
        new = _parse_long_add(args)
    else:
        pairs = _pairs(args, "add <r1z1-127.0.0.1:6200/d1_meta> <weight> [...]")
        new = [(parse_add_value(spec), _float(w, "weight", 0)) for spec, w in pairs]
    builder = _load(path)
    added = [(builder.add_dev(dict(dev, weight=weight)), weight) for dev, weight in new]
    builder.save(path)
    for dev_id, weight in added:
        name = format_device(builder.devs[dev_id])
        print(f"Device {name} with weight {weight:g} got id {dev_id}")
    return EXIT_OK


def cmd_remove(path, args):
    """remove <search> [...] [--yes]"""
    yes, searches = _split_flag(args, "--yes")
    if not searches:
        raise CommandError(f"usage: {PROG} <builder_file> remove <search> [...] [--yes]")
    builder = _load(path)
    targets = {}
    for search in searches:
        for dev in _match(builder, search, yes):
            targets[dev["id"]] = format_device(dev)
    for dev_id in targets:
        builder.remove_dev(dev_id)
    builder.save(path)
    for name in targets.values():
        print(f"{name} removed; its partitions move at the next rebalance")
    return EXIT_OK


def cmd_set_weight(path, args):
    """set_weight <search> <weight> [...] [--yes]"""
    yes, rest = _split_flag(args, "--yes")
    pairs = _pairs(rest, "set_weight <search> <weight> [<search> <weight> ...] [--yes]")
    builder = _load(path)
    changes = []
    for search, text in pairs:
        weight = _float(text, "weight", 0)
        changes.extend((dev, weight) for dev in _match(builder, search, yes))
    report = []
    for dev, weight in changes:
        report.append(f"{format_device(dev)} weight {dev['weight']:g} -> {weight:g}")
        builder.set_dev_weight(dev["id"], weight)
    builder.save(path)
    print("\n".join(report))
    return EXIT_OK


def cmd_set_replicas(path, args):
    """set_replicas <replicas>"""
    _expect(args, 1, "set_replicas <replicas>")
    replicas = _float(args[0], "replicas", 1)
    builder = _load(path)
    builder.set_replicas(replicas)
    builder.save(path)
    print(f"The replica count is now {replicas:g}; rebalance to apply it.")
    return EXIT_OK


def parse_overload(text):
    """``0.1`` or ``10%`` -> 0.1."""
    if text.endswith("%"):
        return _float(text[:-1], "overload", 0) / 100.0
    return _float(text, "overload", 0)


def cmd_set_overload(path, args):
    """set_overload <fraction | percent%>"""
    _expect(args, 1, "set_overload <fraction | percent%>")
    overload = parse_overload(args[0])
    builder = _load(path)
    builder.set_overload(overload)
    builder.save(path)
    print(f"The overload factor is now {overload * 100:.2f}% ({overload:.6f})")
    return EXIT_OK


def cmd_set_min_part_hours(path, args):
    """set_min_part_hours <hours>"""
    _expect(args, 1, "set_min_part_hours <hours>")
    hours = _int(args[0], "min_part_hours", 0)
    builder = _load(path)
    builder.set_min_part_hours(hours)
    builder.save(path)
    print(f"The minimum number of hours before a partition can be reassigned is now {hours}")
    return EXIT_OK


def cmd_rebalance(path, args):
    """rebalance [--seed N] [--force]"""
    parser = _Options("rebalance")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--force", action="store_true")
    opts = parser.parse_args(args)
    builder = _load(path)
    # A rebalance that moved nothing is not saved (so it does not count as a change),
    # unless it is the first one or it dropped removed devices from the builder.
    must_save = opts.force or not builder.ever_rebalanced or bool(builder.pending_removal)
    moved, balance, dispersion = builder.rebalance(seed=opts.seed)
    if moved == 0 and not must_save:
        remaining = builder.min_part_hours_remaining()
        why = (
            f"min_part_hours holds recently moved partitions for another {remaining} h"
            if remaining
            else "none needs to move"
        )
        print(f"No partitions could be reassigned ({why}). Nothing was saved.")
        return EXIT_WARNING
    # Never hand out a ring that fails the builder's own checks.
    builder.validate()
    ring = builder.get_ring()
    builder.save(path)
    ring_path = ring_path_for(path)
    ring.save(ring_path)
    total = ring.replica_count * (1 << builder.part_power)
    share = 100.0 * moved / total if total else 0.0
    print(
        f"Reassigned {moved} ({share:.2f}%) partition replicas. "
        f"Balance is now {balance:.2f}. Dispersion is now {dispersion:.2f}"
    )
    print(f"Wrote {path} and {ring_path}")
    status = EXIT_OK
    if balance >= BALANCE_WARN_PERCENT:
        print(
            f"NOTE: balance {balance:.2f} is off the ideal: push this ring, wait at least "
            f"{builder.min_part_hours} h (min_part_hours), then rebalance and push again."
        )
        status = EXIT_WARNING
    if dispersion > 0:
        print(
            f"NOTE: dispersion {dispersion:.2f}: some partitions have replicas closer "
            "together than the devices allow; review weights or overload (see dispersion)."
        )
        status = EXIT_WARNING
    return status


def cmd_write_ring(path, args):
    """write_ring"""
    _expect(args, 0, "write_ring")
    builder = _load(path)
    if not builder.ever_rebalanced:
        raise CommandError(f"{path} has never been rebalanced; run rebalance first")
    ring_path = ring_path_for(path)
    builder.get_ring().save(ring_path)
    print(f"Wrote {ring_path}")
    return EXIT_OK


def cmd_list_parts(path, args):
    """list_parts <search> [...]"""
    if not args:
        raise CommandError(f"usage: {PROG} <builder_file> list_parts <search> [...]")
    builder = _load(path)
    if not builder.ever_rebalanced:
        raise CommandError(f"{path} has never been rebalanced; it has no partitions yet")
    dev_ids = []
    for search in args:
        dev_ids.extend(d["id"] for d in _match(builder, search, True) if d["id"] not in dev_ids)
    print(cli_report.parts_table(builder.list_parts(dev_ids)))
    return EXIT_OK


def cmd_search(path, args):
    """search <search>"""
    _expect(args, 1, "search <search>")
    builder = _load(path)
    devs = _match(builder, args[0], True)
    print(cli_report.device_table(builder, devs))
    return EXIT_OK


def cmd_dispersion(path, args):
    """dispersion"""
    _expect(args, 0, "dispersion")
    builder = _load(path)
    if not builder.ever_rebalanced:
        raise CommandError(f"{path} has never been rebalanced; no dispersion to report")
    print(cli_report.dispersion(builder.dispersion_report()))
    return EXIT_OK


def cmd_validate(path, args):
    """validate"""
    _expect(args, 0, "validate")
    builder = _load(path)
    builder.validate()
    print(f"{path}: OK")
    return EXIT_OK


def cmd_pretend(path, args):
    """pretend_min_part_hours_passed"""
    _expect(args, 0, "pretend_min_part_hours_passed")
    builder = _load(path)
    builder.pretend_min_part_hours_passed()
    builder.save(path)
    print("Every partition may now move at the next rebalance.")
    return EXIT_OK


COMMANDS = {
    None: cmd_show,
    "create": cmd_create,
    "add": cmd_add,
    "remove": cmd_remove,
    "set_weight": cmd_set_weight,
    "set_replicas": cmd_set_replicas,
    "set_overload": cmd_set_overload,
    "set_min_part_hours": cmd_set_min_part_hours,
    "rebalance": cmd_rebalance,
    "write_ring": cmd_write_ring,
    "list_parts": cmd_list_parts,
    "search": cmd_search,
    "dispersion": cmd_dispersion,
    "validate": cmd_validate,
    "pretend_min_part_hours_passed": cmd_pretend,
}


if __name__ == "__main__":
    sys.exit(main())
