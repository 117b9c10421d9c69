"""``python -m fuzz`` (from ``tests/``): the command line of the Engine.receive fuzzer (see runner.py)."""

from __future__ import annotations

import argparse
import sys

from . import runner


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--seed", type=int, default=1, help="the run's seed (default 1)")
    parser.add_argument("--count", type=int, default=10000, help="number of inputs (default 10000)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--time-limit", type=float, default=0.0, help="stop each worker after this many seconds"
    )
    parser.add_argument(
        "--progress", type=float, default=60.0, help="seconds between progress lines (0: none)"
    )
    parser.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the corpus' target messages and exit")
    parser.add_argument("--reproduce", metavar="SEED:INDEX", help="run one input of a past run, with details")
    parser.add_argument(
        "--target", help="with --hex: the target (scenario/role#action, see --list) that receives the input"
    )
    parser.add_argument("--hex", help="with --target: datagrams in hex, separated by commas")
    parser.add_argument("--no-data", action="store_true", help="leave the inputs' hex out of the report")
    args = parser.parse_args(argv)

    if args.list:
        runner.prepare(args.scenario)
        for target in runner._CORPUS:
            print("%-24s %-9s %s" % (target.name, target.role, target.label))
        return 0
    if args.reproduce:
        seed, index = (int(x) for x in args.reproduce.split(":"))
        stats, text = runner.reproduce(seed, index, args.scenario)
        print(text)
        print(runner.report(stats, seed, scenarios=args.scenario))
        return 1 if runner.failed(stats) else 0
    if args.target or args.hex:
        if not (args.target and args.hex):
            parser.error("--target and --hex go together")
        stats, text = runner.replay_hex(args.target, args.hex, args.scenario)
        print(text)
        return 1 if runner.failed(stats) else 0

    stats = runner.fuzz(args.seed, args.count, args.processes, args.time_limit, args.progress, args.scenario)
    print(runner.report(stats, args.seed, show_data=not args.no_data, scenarios=args.scenario))
    if runner.failed(stats):
        print(
            "fuzz: FAILED: something escaped Engine.receive or broke an invariant (see above)",
            file=sys.stderr,
        )
        return 1
    print("fuzz: no exception escaped Engine.receive and no invariant broke")
    return 0


if __name__ == "__main__":
    sys.exit(main())
