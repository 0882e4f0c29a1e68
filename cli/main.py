"""``haneul <command> ...``: one entry point that hands off to each command's module.

Each command lives in its own module with a ``main(argv) -> int`` function; this file
only knows their names, so adding a command never touches another one's code.
"""

import importlib
import sys

# command name -> ("module" or "module:function", one-line help)
COMMANDS = {
    "up": ("cli.cluster:up_main", "start the all-in-one cluster: up [--dir DIR] [--nodes N]"),
    "down": ("cli.cluster:down_main", "stop the all-in-one cluster: down [--dir DIR]"),
    "status": ("cli.cluster:status_main", "show the all-in-one cluster's processes"),
    "ring": ("ring.cli", "build and inspect rings (same grammar as swift-ring-builder)"),
    "serve": ("cli.serve", "run a server in the foreground: serve storage|proxy|agent -c CONF"),
    "agent": ("cli.agent", "run background daemons once: agent --once [-c CONF | --dir DIR]"),
}


def usage():
    lines = ["usage: haneul <command> [args...]", "", "commands:"]
    for name, (_module, text) in COMMANDS.items():
        lines.append(f"  {name:<8} {text}")
    return "\n".join(lines)


def main(argv=None):
    """Dispatch to a command's ``main``; unknown commands exit 2 with the usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"haneul: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, function = COMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function or "main")(rest)


if __name__ == "__main__":
    sys.exit(main())
