"""balance-check: send requests to a URL and show how they spread over the replicas.

Exit status: 0 when every expectation holds, 1 when one does not, 2 when the target
cannot be checked at all (bad URL, nothing listening, answers that name no replica), 3 when
too few requests were sent to tell (the line says how many are needed).
"""

import argparse
import json
import os
import sys
import time
import warnings

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from balance_check import Expectations, Identity, TargetError, check
from balance_check.checks import verdicts
from balance_check.report import as_json, render, write_junit
from balance_check.sampling import SessionKey

EXIT_OK, EXIT_UNMET, EXIT_CANNOT_CHECK, EXIT_CANNOT_TELL = 0, 1, 2, 3


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


def weights(text):
    """`a=3,b=1` (by replica name) or `3,1` (for the replicas in name order)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    named = [part.partition("=") for part in parts]
    try:
        if all(sep for _, sep, _ in named):
            spec = {name.strip(): float(weight) for name, _, weight in named}
            values = spec.values()
        elif not any(sep for _, sep, _ in named):
            spec = values = tuple(float(part) for part in parts)
        else:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give NAME=WEIGHT,... or WEIGHT,... (in the replicas' name order)"
        ) from None
    if len(values) < 1 or min(values) < 0 or sum(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: weights must be 0 or more, not all 0")
    return spec


def session_header(text):
    """`NAME` (each client sends client-1, client-2, ...) or `NAME:VALUE` with {client}."""
    name, _, value = text.partition(":")
    if not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME or NAME:VALUE")
    return SessionKey(header=name.strip(), header_value=value.strip() or "client-{client}")


def parser():
    commands = argparse.ArgumentParser(
        prog="balance-check",
        description="Send requests to a URL and show how they spread over the replicas "
        "behind it. Exit status: 0 expectations hold, 1 they do not, 2 cannot check, "
        "3 too few requests to tell yet.",
    )
    commands.add_argument("url", nargs="?", default=default_url(), help="default: %(default)s")
    amount = commands.add_mutually_exclusive_group()
    amount.add_argument(
        "-n", "--requests", type=positive_int, default=500, help="how many (default: %(default)s)"
    )
    amount.add_argument("-d", "--duration", type=positive_float, help="send for this many seconds")
    clients = commands.add_mutually_exclusive_group()
    clients.add_argument(
        "-c", "--concurrency", type=positive_int, default=10, help="clients (default: %(default)s)"
    )
    clients.add_argument(
        "--clients",
        type=positive_int,
        metavar="K",
        help="K independent clients (own connections and cookies, -n split evenly): each "
        "must stay on one replica, and the clients must spread as expected",
    )
    session = commands.add_mutually_exclusive_group()
    session.add_argument(
        "--session-cookie",
        metavar="NAME",
        help="with --clients: the balancer's stickiness cookie; every client must get it",
    )
    session.add_argument(
        "--session-header",
        type=session_header,
        metavar="NAME[:VALUE]",
        help="with --clients: send this header as the session key; {client} in VALUE is the "
        "client's number (e.g. X-Forwarded-For:10.0.{client}.1)",
    )
    commands.add_argument(
        "--http2",
        action="store_true",
        help="each client is one HTTP/2 connection carrying every request as a stream: "
        "tells whether the balancer balances requests or pins connections",
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
        "--expect-weights",
        type=weights,
        metavar="SPEC",
        help="the shares the replicas should get: NAME=WEIGHT,... by the names the answers "
        "give, or WEIGHT,... for the replicas in name order (default: even)",
    )
    commands.add_argument(
        "--tolerance",
        type=fraction,
        default=0.5,
        help="each replica must answer (1 ± this) × its expected share (default: %(default)s)",
    )
    commands.add_argument(
        "--window",
        type=positive_float,
        metavar="S",
        help="with --duration: each replica's share per window of S seconds must stay in range",
    )
    commands.add_argument(
        "--max-errors", type=int, default=0, help="failed requests allowed (default: %(default)s)"
    )
    commands.add_argument(
        "--min-p-value", type=fraction, help="fail when the chi-square p-value is lower"
    )
    commands.add_argument("--json", action="store_true", help="print the result as JSON")
    commands.add_argument(
        "--junit", metavar="FILE", help="also write a JUnit XML report: one test case per check"
    )
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
    commands = parser()
    args = commands.parse_args(argv)
    if (args.session_cookie or args.session_header) and not args.clients:
        commands.error("--session-cookie and --session-header need --clients K")
    if args.window and not args.duration:
        commands.error("--window needs --duration")
    identity = Identity(fields=tuple(args.fields or ["hostname"]), header=args.header)
    expect = Expectations(
        args.expect_replicas, args.tolerance, args.max_errors, args.min_p_value, args.expect_weights
    )
    session_key = args.session_header or (
        SessionKey(cookie=args.session_cookie) if args.session_cookie else None
    )
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
                concurrency=args.clients or args.concurrency,
                timeout=args.timeout,
                identity=identity,
                new_connections=args.new_connections,
                on_sample=advance,
                verify=verify,
                http2=args.http2,
                session_key=session_key,
                # Every client (every connection) must send enough to show where it stays.
                split_evenly=bool(args.clients or args.http2),
            )
        except TargetError as error:
            print(f"balance-check: {error}", file=sys.stderr)
            return EXIT_CANNOT_CHECK
        except KeyboardInterrupt:
            return 130
    found = verdicts(
        result,
        expect,
        sticky=bool(args.clients),
        session_cookie=args.session_cookie,
        window=args.window,
    )
    if args.json:
        print(json.dumps(as_json(result, found, expect, args.window), indent=2))
    else:
        render(result, found, Console(), expect, args.window)
    if args.junit:
        write_junit(result, found, args.junit)
    if any(verdict.failures for verdict in found):
        return EXIT_UNMET
    if any(verdict.cannot_tell for verdict in found):
        return EXIT_CANNOT_TELL
    return EXIT_OK
