"""Send speed: smtpkit.send end to end vs a naive loop vs raw aiosmtplib, into Postfix smtp-sink.

All ways send the same number of ~2 KB messages to Postfix's ``smtp-sink`` (a C SMTP server that
accepts and discards; the Python sandbox cannot absorb more than ~2,000 messages/s) on
127.0.0.1, side by side in one run:

(a) the naive notebook loop: an ``email.message.EmailMessage`` per row, one reused ``smtplib``
    connection;
(b) raw aiosmtplib, 16 pooled connections, one pre-built message (no personalization, no journal);
(c) ``smtpkit.send`` end to end: personalized template, 16 connections, journal on;
(c0) the same with ``journal=None``, to measure the journal's overhead.

Then peak RSS of ``smtpkit.send`` for a 200,000-recipient campaign vs a 50,000 one, each in its own
subprocess (streaming: memory should not grow with the list), next to the *floor*: the peak of a
process that only builds the same input frame and loads the returned frame (no sending). The
input and output frames grow with the list whatever the engine does, so the raw ratio cannot go
below the floor's ratio; the engine's part is the difference.

Targets (issue 6): (c) >= 10x (a) and >= 1.0x (b); journal overhead <= 10%; RSS ratio <= 1.3.

Needs ``smtp-sink`` (Debian package ``postfix``): when it is missing, the script installs postfix
with apt-get (as root or with password-less sudo) without starting its services. It starts the
sink on a free port and stops it by PID at the end, also on error.

The machine is shared and noisy, so every way runs in each of ``--repeat`` interleaved rounds
(the naive loop too, so that it meets the same load as the others) and the medians are compared;
each way starts after a full garbage collection, so that none pays for another's garbage. The
journal's overhead is a difference of a few percent between (c) and (c0), below the noise of
one round (+-5% here), so ``--pairs`` more runs of the two follow the rounds, and the overhead
compares their medians over all of them; (c) and (c0) take turns going first.
The CPU time per message of (c) and (c0) is printed too (for (c), with that of the journal's
writer process, which commits the journal on another core): it is what the engine costs, and it
moves less than the rate when other programs compete for the cores.

Run:  .venv/bin/python bench/send_bench.py            (20,000 messages each way)
      .venv/bin/python bench/send_bench.py --rows 5000 --repeat 1 --pairs 0 --no-rss --no-naive
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SINKS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")
CONNECTIONS = 16

# ~1.9 KB of text with a few personalized fields: a typical newsletter in plain text
PARAGRAPH = (
    "Our spring collection is here, and we picked a few things we think you will like. "
    "Every order this month ships free, and members get early access to the sale. "
)
BODY = (
    "Hello {first_name},\n\n"
    + PARAGRAPH * 3
    + "\n\nAs a {plan} member in {city} you also get {discount}% off your next order.\n\n"
    + PARAGRAPH * 4
    + "\n\nYour member number: {contact_id}\n\nSee you soon,\nThe Acme team\n"
)
SUBJECT = "{first_name}, our spring collection is here"
SENDER = "Acme News <news@acme.example>"


def _installed_sink() -> str | None:
    for path in SINKS:
        if os.path.exists(path):
            return path
    return shutil.which("smtp-sink")


def _install_postfix() -> None:
    """Install Debian's postfix for its smtp-sink, keeping its services from starting."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if shutil.which("apt-get") is None or (sudo and shutil.which("sudo") is None):
        return
    print("smtp-sink not found: installing Debian's postfix (its services are not started)",
          flush=True)
    policy = "/usr/sbin/policy-rc.d"
    own_policy = not os.path.exists(policy)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if own_policy:
            subprocess.run([*sudo, "sh", "-c", f"printf '#!/bin/sh\\nexit 101\\n' > {policy} "
                            f"&& chmod +x {policy}"], check=True)
        subprocess.run([*sudo, "sh", "-c", "echo 'postfix postfix/main_mailer_type select No "
                        "configuration' | debconf-set-selections"], check=False, env=env)
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "postfix"], check=True, env=env)
    except subprocess.CalledProcessError as exc:
        print(f"installing postfix failed ({exc})", flush=True)
    finally:
        if own_policy:
            subprocess.run([*sudo, "rm", "-f", policy], check=False)


def find_sink() -> str:
    found = _installed_sink()
    if found is None:
        _install_postfix()
        found = _installed_sink()
    if found:
        return found
    sys.exit(
        "smtp-sink not found and postfix could not be installed here (needs apt-get and root "
        "or password-less sudo); install it without starting its services, e.g.\n"
        "  printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x "
        "/usr/sbin/policy-rc.d\n"
        "  apt-get update && apt-get install -y --no-install-recommends postfix"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    """Run smtp-sink on 127.0.0.1:<free port>; stop it by PID afterwards, even on error."""
    port = free_port()
    args = [find_sink(), "-u", "nobody", f"127.0.0.1:{port}", "1024"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise SystemExit(f"smtp-sink did not start: {err}") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def contacts(n: int) -> pd.DataFrame:
    from smtpkit._sample import COMPANY_DOMAINS, PROVIDER_DOMAINS

    domains = list(PROVIDER_DOMAINS) + list(COMPANY_DOMAINS)
    first = ["Ann", "Bob", "Chloé", "Dmitri", "Eva", "Farid", "Grace", "Hiro"]
    cities = ["Berlin", "Lyon", "Porto", "Oslo", "Austin", "Osaka"]
    plans = ["free", "pro", "enterprise"]
    return pd.DataFrame({
        "contact_id": range(100000, 100000 + n),
        "email": [f"user{i}@{domains[i % len(domains)]}" for i in range(n)],
        "first_name": [first[i % len(first)] for i in range(n)],
        "city": [cities[i % len(cities)] for i in range(n)],
        "plan": [plans[i % len(plans)] for i in range(n)],
        "discount": [5 + i % 20 for i in range(n)],
    })


# --- (a) naive loop ----------------------------------------------------------------------------


def naive(port: int, frame: pd.DataFrame) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for row in frame.itertuples(index=False):
            values = row._asdict()
            msg = EmailMessage()
            msg["From"] = SENDER
            msg["To"] = row.email
            msg["Subject"] = SUBJECT.format(**values)
            msg.set_content(BODY.format(**values))
            client.send_message(msg, from_addr="news@acme.example", to_addrs=[row.email])
    return len(frame) / (time.perf_counter() - started)


# --- (b) raw aiosmtplib -------------------------------------------------------------------------


def raw_aiosmtplib(port: int, frame: pd.DataFrame) -> float:
    import aiosmtplib

    values = frame.iloc[0].to_dict()
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = values["email"]
    message["Subject"] = SUBJECT.format(**values)
    message.set_content(BODY.format(**values))
    data = message.as_bytes()
    recipients = frame["email"].tolist()

    async def main() -> float:
        queue = list(reversed(recipients))

        async def worker() -> None:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                                     local_hostname="bench.example")
            await client.connect()
            while queue:
                rcpt = queue.pop()
                await client.sendmail("news@acme.example", [rcpt], data)
            await client.quit()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        return len(recipients) / (time.perf_counter() - started)

    return asyncio.run(main())


# --- (c) smtpkit.send ---------------------------------------------------------------------------


def with_smtpkit(port: int, frame: pd.DataFrame, *, journal: bool
                 ) -> tuple[float, pd.Series, float]:
    """(messages/s, status counts, CPU microseconds per message: this process's and that of
    the journal's writer process, which commits the journal off the engine's event loop)."""
    import smtpkit

    template = smtpkit.Template(subject=SUBJECT, text=BODY, sender=SENDER)
    config = smtpkit.SMTPConfig("127.0.0.1", port, tls="none", local_hostname="bench.example")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.db") if journal else None
        cpu = time.process_time()
        children = _children_cpu()
        started = time.perf_counter()
        result = smtpkit.send(frame, template, config, campaign="bench", journal=path,
                              concurrency=CONNECTIONS, progress=False)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        # the writer process ended with the send; its exit is collected on a thread: wait for
        # it, so that its CPU time is counted (smtp-sink, the other child, is still running)
        for thread in threading.enumerate():
            if thread.name == "smtpkit-journal-writer-exit":
                thread.join(10)
        cpu += _children_cpu() - children
    return len(frame) / elapsed, result["status"].value_counts(), cpu / len(frame) * 1e6


def _children_cpu() -> float:
    """CPU seconds of this process's ended (collected) child processes."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


# --- peak RSS in a subprocess -------------------------------------------------------------------

def vm(field: str) -> float | None:
    """This process's ``/proc/self/status`` memory field (VmRSS, VmHWM ...) in MB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def peak_mb(reset: bool) -> float | None:
    """Peak RSS in MB since :func:`reset_peak` (or since the start, when it could not reset)."""
    if reset:
        return vm("VmHWM")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) so that what follows is measured alone."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


_RSS_CHILD = """
import gc, json, os, resource, sys, tempfile, time
sys.path.insert(0, {bench!r})
import send_bench
import smtpkit

port, n = int(sys.argv[1]), int(sys.argv[2])
frame = send_bench.contacts(n)
template = smtpkit.Template(subject=send_bench.SUBJECT, text=send_bench.BODY,
                            sender=send_bench.SENDER)
config = smtpkit.SMTPConfig("127.0.0.1", port, tls="none", local_hostname="bench.example")
gc.collect()
# measure the send, not the building of the test frame: reset the peak (Linux: VmHWM)
reset = send_bench.reset_peak()
before = send_bench.vm("VmRSS")
with tempfile.TemporaryDirectory() as folder:
    started = time.perf_counter()
    result = smtpkit.send(frame, template, config, campaign="rss",
                          journal=os.path.join(folder, "rss.db"), concurrency=16, progress=False)
    elapsed = time.perf_counter() - started
peak = send_bench.peak_mb(reset)
if len(sys.argv) > 3:  # keep the returned frame for the floor measurement
    result.to_feather(sys.argv[3])
print(json.dumps({{"rows": n, "sent": int((result["status"] == "sent").sum()),
                  "peak_rss_mb": peak, "rss_before_mb": before, "reset": reset,
                  "frame_mb": frame.memory_usage(deep=True).sum() / 2**20,
                  "result_mb": result.memory_usage(deep=True).sum() / 2**20,
                  "per_second": n / elapsed}}))
"""


_FLOOR_CHILD = """
import gc, json, os, resource, sys
sys.path.insert(0, {bench!r})
import pandas as pd
import pyarrow.feather as feather
import send_bench
import smtpkit  # the same modules loaded as in the send child

n, saved = int(sys.argv[1]), sys.argv[2]
frame = send_bench.contacts(n)
gc.collect()
reset = send_bench.reset_peak()
before = send_bench.vm("VmRSS")
# memory-mapped and zero-copy where the types allow: the frame itself, hardly any temporary
result = feather.read_table(saved, memory_map=True).to_pandas()
peak = send_bench.peak_mb(reset)
print(json.dumps({{"rows": n, "peak_rss_mb": peak, "rss_before_mb": before,
                  "result_mb": result.memory_usage(deep=True).sum() / 2**20}}))
"""


def peak_rss(port: int, n: int, *, floor: bool = True) -> dict[str, Any]:
    """Peak RSS of send() for ``n`` recipients in a fresh process; with ``floor``, also that of
    a process that only builds the same input frame and loads the frame send() returned."""
    bench = str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as folder:
        saved = os.path.join(folder, "result.arrow")
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD.format(bench=bench), str(port), str(n), saved],
            check=True, capture_output=True, text=True, cwd=ROOT, timeout=1800)
        found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        if floor:
            out = subprocess.run(
                [sys.executable, "-c", _FLOOR_CHILD.format(bench=bench), str(n), saved],
                check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
            found["floor"] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def _pair(port: int, frame: pd.DataFrame, runs: dict[str, list[float]],
          cpu: dict[str, list[float]], *, first_with_journal: bool) -> None:
    """One run of (c) and one of (c0), in the order given (alternated, so that neither always
    comes first)."""
    for journal in (True, False) if first_with_journal else (False, True):
        gc.collect()
        rate, counts, used = with_smtpkit(port, frame, journal=journal)
        assert dict(counts) == {"sent": len(frame)}, counts
        runs["c" if journal else "c0"].append(rate)
        cpu["c" if journal else "c0"].append(used)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="messages per way")
    parser.add_argument("--repeat", type=int, default=5,
                        help="interleaved rounds of every way; medians are compared")
    parser.add_argument("--no-rss", action="store_true", help="skip the memory comparison")
    parser.add_argument("--no-naive", action="store_true", help="skip (a), the slow naive loop")
    parser.add_argument("--pairs", type=int, default=10,
                        help="extra (c)/(c0) pairs for the journal overhead, a difference of a "
                             "few percent that the machine's noise (+-5%% a round) hides")
    args = parser.parse_args()
    frame = contacts(args.rows)
    runs: dict[str, list[float]] = {"a": [], "b": [], "c": [], "c0": []}
    cpu: dict[str, list[float]] = {"c": [], "c0": []}
    with smtp_sink() as port:
        print(f"smtp-sink on 127.0.0.1:{port}; {args.rows:,} messages per way, "
              f"{CONNECTIONS} connections for (b) and (c); {os.cpu_count()} CPUs, load "
              f"{os.getloadavg()[0]:.1f}")
        for round_ in range(1, args.repeat + 1):
            # each way starts without the garbage of the one before (a full collection it
            # did not cause would otherwise land in whichever way comes next)
            if not args.no_naive:
                gc.collect()
                runs["a"].append(naive(port, frame))
            gc.collect()
            runs["b"].append(raw_aiosmtplib(port, frame))
            _pair(port, frame, runs, cpu, first_with_journal=round_ % 2 == 1)
            naive_part = f"(a) {runs['a'][-1]:,.0f}  " if runs["a"] else ""
            print(f"  round {round_}: {naive_part}(b) {runs['b'][-1]:,.0f}  "
                  f"(c) {runs['c'][-1]:,.0f}  (c0) {runs['c0'][-1]:,.0f} msg/s; CPU per "
                  f"message (c) {cpu['c'][-1]:.0f} us, (c0) {cpu['c0'][-1]:.0f} us; load "
                  f"{os.getloadavg()[0]:.1f}")
        pairs = [(c, c0) for c, c0 in zip(runs["c"], runs["c0"], strict=True)]
        for pair in range(args.pairs):
            _pair(port, frame, runs, cpu, first_with_journal=pair % 2 == 1)
            pairs.append((runs["c"][-1], runs["c0"][-1]))
        if args.pairs:
            print(f"  {args.pairs} more pairs of (c) and (c0): (c) "
                  f"{', '.join(f'{c:,.0f}' for c, _ in pairs[-args.pairs:])}; (c0) "
                  f"{', '.join(f'{c0:,.0f}' for _, c0 in pairs[-args.pairs:])} msg/s")
        results = {name: _median(values) for name, values in runs.items() if values}
        print()
        if "a" in results:
            print(f"(a) naive EmailMessage + smtplib loop   {results['a']:>9,.0f} msg/s  (median)")
        print(f"(b) raw aiosmtplib, pre-built bytes     {results['b']:>9,.0f} msg/s  (median)")
        print(f"(c) smtpkit.send, journal on            {results['c']:>9,.0f} msg/s  (median of "
              f"{len(runs['c'])}; {_median(cpu['c']):.0f} us CPU/msg with the journal writer's)")
        print(f"(c0) smtpkit.send, journal=None         {results['c0']:>9,.0f} msg/s  (median of "
              f"{len(runs['c0'])}; {_median(cpu['c0']):.0f} us CPU/msg)")
        print()
        c_rounds = _median([c for c, _ in pairs[: args.repeat]])  # next to (a) and (b)
        if "a" in results:
            each = [c / a for (c, _), a in zip(pairs, runs["a"], strict=False)]
            print(f"(c) / (a) = {c_rounds / results['a']:5.1f}x   (target >= 10x; the rounds' "
                  f"medians; per round {', '.join(f'{x:.1f}' for x in each)})")
        print(f"(c) / (b) = {c_rounds / results['b']:5.2f}x   (target >= 1.0x; the rounds' "
              "medians)")
        overhead = 1 - results["c"] / results["c0"]
        by_cpu = 1 - _median(cpu["c0"]) / _median(cpu["c"])
        each = sorted(1 - c / c0 for c, c0 in pairs)
        print(f"journal overhead = {overhead:6.1%}   (target <= 10%; 1 - median (c) / median (c0) "
              f"over {len(pairs)} pairs; median of the pairs' own {_median(each):.1%}, middle "
              f"half {each[len(each) // 4]:.1%} to {each[(3 * len(each)) // 4]:.1%}; by CPU time "
              f"per message {by_cpu:.1%})")
        if not args.no_rss:
            small = peak_rss(port, 50_000)
            large = peak_rss(port, 200_000)
            print()
            how = "during send()" if small["reset"] else "whole process (ru_maxrss)"
            for item in (small, large):
                print(f"peak RSS {how}, {int(item['rows']):>7,} recipients: "
                      f"{item['peak_rss_mb']:6.1f} MB  (before send {item['rss_before_mb']:.0f} "
                      f"MB; input frame {item['frame_mb']:.0f} MB, returned frame "
                      f"{item['result_mb']:.0f} MB; {int(item['sent']):,} sent, "
                      f"{item['per_second']:,.0f} msg/s)")
            for item in (small, large):
                floor = item["floor"]
                print(f"floor: input frame + loading the returned frame, no send, "
                      f"{int(item['rows']):>7,}: {floor['peak_rss_mb']:6.1f} MB")
            ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
            floor_ratio = large["floor"]["peak_rss_mb"] / small["floor"]["peak_rss_mb"]
            print(f"RSS ratio 200k / 50k = {ratio:4.2f}   (target <= 1.3; the floor's ratio, "
                  f"frames alone: {floor_ratio:4.2f})")
            # what the engine itself adds to the frames the caller has anyway
            own = [i["peak_rss_mb"] - i["floor"]["peak_rss_mb"] for i in (small, large)]
            print(f"send() peak minus the floor: {own[0]:+.0f} MB (50k), {own[1]:+.0f} MB (200k) "
                  "(what the engine adds does not grow with the list when the second is not "
                  "above the first)")


if __name__ == "__main__":
    main()
