"""balance-check: send requests to a URL and show how they spread over the replicas.

Exit status: 0 when every expectation holds, 1 when one does not, 2 when the target
cannot be checked at all (bad URL, nothing listening, answers that name no replica).
"""

import argparse
import json
import os
import sys
import time
import warnings

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from balance_check import Expectations, Identity, TargetError, check, unmet_expectations
from balance_check.report import as_json, render

EXIT_OK, EXIT_UNMET, EXIT_CANNOT_CHECK = 0, 1, 2


def default_url():
    # The stack publishes nginx on GATEWAY_PORT (8000 unless changed).
    return f"http://localhost:{os.environ.get('GATEWAY_PORT', '8000')}/info"


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def positive_float(text):
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


def fraction(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def readable_file(text):
    if not os.path.isfile(text) or not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not a file that can be read")
    return text


def parser():
    commands = argparse.ArgumentParser(
        prog="balance-check",
        description="Send requests to a URL and show how they spread over the replicas "
        "behind it. Exit status: 0 expectations hold, 1 they do not, 2 cannot check.",
    )
    commands.add_argument("url", nargs="?", default=default_url(), help="default: %(default)s")
    amount = commands.add_mutually_exclusive_group()
    amount.add_argument(
        "-n", "--requests", type=positive_int, default=500, help="how many (default: %(default)s)"
    )
    amount.add_argument("-d", "--duration", type=positive_float, help="send for this many seconds")
    commands.add_argument(
        "-c", "--concurrency", type=positive_int, default=10, help="clients (default: %(default)s)"
    )
    commands.add_argument(
        "--timeout", type=positive_float, default=5.0, help="per request, s (default: %(default)s)"
    )
    named = commands.add_mutually_exclusive_group()
    named.add_argument(
        "--field",
        action="append",
        dest="fields",
        metavar="NAME",
        help="JSON field that names the replica; repeat to combine (default: hostname)",
    )
    named.add_argument(
        "--header", metavar="NAME", help="response header that names the replica (X-Served-By)"
    )
    commands.add_argument(
        "--new-connections",
        action="store_true",
        help="open a connection per request (for balancers that pick a replica per connection)",
    )
    trust = commands.add_mutually_exclusive_group()
    trust.add_argument(
        "--cacert",
        type=readable_file,
        metavar="FILE",
        help="for https: trust the CA certificate(s) in FILE, e.g. certs/ca.crt of make up",
    )
    trust.add_argument(
        "--insecure", action="store_true", help="for https: do not verify the certificate at all"
    )
    commands.add_argument(
        "--expect-replicas", type=positive_int, metavar="N", help="exactly N replicas must answer"
    )
    commands.add_argument(
        "--tolerance",
        type=fraction,
        default=0.5,
        help="each replica must answer (1 ± this) × an even share (default: %(default)s)",
    )
    commands.add_argument(
        "--max-errors", type=int, default=0, help="failed requests allowed (default: %(default)s)"
    )
    commands.add_argument(
        "--min-p-value", type=fraction, help="fail when the chi-square p-value is lower"
    )
    commands.add_argument("--json", action="store_true", help="print the result as JSON")
    return commands


def progress_bar(total, duration):
    """A progress bar on stderr; it shows nothing when stderr is not a terminal."""
    console = Console(stderr=True)
    counted = MofNCompleteColumn() if duration is None else TextColumn("{task.completed:.0f} s")
    return Progress(
        TextColumn("sending"),
        BarColumn(),
        counted,
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def main(argv=None):
    """Run the checker; return the exit status."""
    args = parser().parse_args(argv)
    identity = Identity(fields=tuple(args.fields or ["hostname"]), header=args.header)
    expect = Expectations(args.expect_replicas, args.tolerance, args.max_errors, args.min_p_value)
    total = None if args.duration else args.requests
    verify = args.cacert or not args.insecure
    if args.insecure:
        # Asked for: urllib3's warning on every request would only bury the report.
        warnings.filterwarnings("ignore", message="Unverified HTTPS request")
    started = time.monotonic()
    with progress_bar(total, args.duration) as progress:
        task = progress.add_task("sending", total=total or args.duration)

        def advance(sample):
            if total:
                progress.advance(task)
            else:
                progress.update(task, completed=min(time.monotonic() - started, args.duration))

        try:
            result = check(
                args.url,
                requests_total=total,
                duration=args.duration,
                concurrency=args.concurrency,
                timeout=args.timeout,
                identity=identity,
                new_connections=args.new_connections,
                on_sample=advance,
                verify=verify,
            )
        except TargetError as error:
            print(f"balance-check: {error}", file=sys.stderr)
            return EXIT_CANNOT_CHECK
        except KeyboardInterrupt:
            return 130
    unmet = unmet_expectations(result, expect)
    if args.json:
        print(json.dumps(as_json(result, unmet), indent=2))
    else:
        render(result, unmet, Console())
    return EXIT_UNMET if unmet else EXIT_OK
