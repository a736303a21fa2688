"""Load test of the review app: 50 concurrent clients on loopback for 30 s, browsing and reviewing.

The app runs as its own process (`plasmacount serve`) on a fresh database holding the demo's
prenatal batch. Each client logs in as its own reviewer, then loops: batch list, batch page,
a sample page, and in 40 % of rounds a status change of a random finding with the version it
just read. Two clients changing one finding at once is expected: the later one must get 409
(conflict), never silently overwrite. Afterwards the database is checked against what the
clients were told: every finding's version is 1 + its accepted changes, the audit holds exactly
one entry per accepted change, and each finding's status is its last accepted one (no lost
update). Errors are any other status code or a failed request.

    python benchmarks/review_load.py [--clients 50] [--seconds 30] [--database URL] [--write]
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx2 as httpx  # the HTTP client of the bench extra (Starlette's TestClient uses it too)
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent
DEMO = ROOT / "data" / "review-demo"
PASSWORD = "load-test-password"
STATUSES = ["Normal", "Suspected", "Probable", "Verified", "False positive"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client_loop(
    index: int, base: str, deadline: float, samples: list[int], log: dict, lock: threading.Lock, seed: int
) -> None:
    rng = random.Random(seed * 1000 + index)
    with httpx.Client(base_url=base, follow_redirects=False, timeout=60) as http:

        def timed(kind: str, method: str, url: str, **kwargs):
            start = time.perf_counter()
            try:
                response = http.request(method, url, **kwargs)
            except httpx.HTTPError as error:
                with lock:
                    log["errors"].append(f"{kind}: {error!r}")
                return None
            with lock:
                log["latency"][kind].append(time.perf_counter() - start)
            return response

        form = http.get("/login").text  # the login form's CSRF token (double-submitted with its cookie)
        login_token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
        response = timed(
            "login",
            "POST",
            "/login",
            data={"username": f"reviewer{index}", "password": PASSWORD, "next": "/", "login_csrf": login_token},
        )
        if response is None or response.status_code != 303:
            with lock:
                log["errors"].append(f"login {index}: {None if response is None else response.status_code}")
            return
        token = http.get("/api/me").json()["csrf_token"]
        while time.perf_counter() < deadline:
            for kind, url in (
                ("batches page", "/"),
                ("batch page", "/batches/1"),
                ("sample page", f"/samples/{rng.choice(samples)}"),
            ):
                response = timed(kind, "GET", url)
                if response is not None and response.status_code != 200:
                    with lock:
                        log["errors"].append(f"{kind} {url}: {response.status_code}")
            if rng.random() < 0.4:
                sample = rng.choice(samples)
                detail = timed("sample API", "GET", f"/api/samples/{sample}")
                if detail is None or detail.status_code != 200:
                    continue
                found = rng.choice(detail.json()["findings"][:3] + detail.json()["findings"][-4:])
                status = rng.choice([s for s in STATUSES if s != found["status"]])
                response = timed(
                    "status change",
                    "POST",
                    f"/api/findings/{found['id']}",
                    json={"status": status, "version": found["version"]},
                    headers={"X-CSRF-Token": token},
                )
                if response is None:
                    continue
                with lock:
                    if response.status_code == 200:
                        log["accepted"].append((found["id"], found["version"] + 1, status))
                    elif response.status_code == 409:
                        log["conflicts"] += 1
                    else:
                        log["errors"].append(
                            f"status change {found['id']}: {response.status_code} {response.text[:200]}"
                        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--database", help="database URL (default: a new SQLite file)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not (DEMO / "nipt").is_dir():
        subprocess.run([sys.executable, "-m", "plasmacount", "--quiet", "demo", str(DEMO)], check=True)
    scratch = tempfile.TemporaryDirectory()
    url = args.database or f"sqlite:///{Path(scratch.name) / 'review.sqlite'}"
    sys.path.insert(0, str(ROOT.parent / "src"))
    from plasmacount.review.database import session_factory, upgrade
    from plasmacount.review.records import create_user, import_batch
    from plasmacount.review.security import hash_password

    upgrade(url)
    factory = session_factory(url)
    with factory() as session:
        hashed = hash_password(PASSWORD)
        from plasmacount.review.database import User, now

        for i in range(args.clients):
            session.add(
                User(username=f"reviewer{i}", password_hash=hashed, role="reviewer", active=True, created_at=now())
            )
        session.commit()
        create_user(session, "loadadmin", PASSWORD, "admin", "load test")
        batch = import_batch(session, [DEMO / "nipt", DEMO / "reports" / "prenatal"], "load test", "prenatal").batch
        samples = [s.id for s in batch.samples]
    factory.kw["bind"].dispose()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "plasmacount", "--quiet", "serve", "--database", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(base + "/login", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    log = {"latency": defaultdict(list), "errors": [], "accepted": [], "conflicts": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + args.seconds
    threads = [
        threading.Thread(target=client_loop, args=(i, base, deadline, samples, log, lock, 7))
        for i in range(args.clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    server.terminate()
    server.wait(timeout=30)

    # No lost update: the database must agree with what the clients were told.
    engine = create_engine(url)
    with engine.connect() as connection:
        versions = dict(connection.execute(text("SELECT id, version FROM findings")).all())
        statuses = dict(connection.execute(text("SELECT id, status FROM findings")).all())
        audited = connection.execute(text("SELECT count(*) FROM audit WHERE action = 'set status'")).scalar()
    engine.dispose()
    accepted_by_finding = defaultdict(list)
    for finding, version, status in log["accepted"]:
        accepted_by_finding[finding].append((version, status))
    lost = []
    for finding, changes in accepted_by_finding.items():
        changes.sort()
        if versions[finding] != 1 + len(changes) or [v for v, _ in changes] != list(range(2, 2 + len(changes))):
            lost.append(f"finding {finding}: version {versions[finding]}, {len(changes)} accepted changes")
        elif statuses[finding] != changes[-1][1]:
            lost.append(f"finding {finding}: status {statuses[finding]}, last accepted {changes[-1][1]}")
    if audited != len(log["accepted"]):
        lost.append(f"audit has {audited} status changes, clients were told of {len(log['accepted'])}")
    every = [t for values in log["latency"].values() for t in values]
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    lines = [
        f"{args.clients} clients on loopback for {args.seconds:.0f} s against `plasmacount serve` ({backend}, one process); "
        f"{len(every):,} requests ({len(every) / elapsed:.0f} per second).",
        "",
        "| request | count | p50 (ms) | p95 (ms) |",
        "|---|---|---|---|",
    ]
    for kind in ("login", "batches page", "batch page", "sample page", "sample API", "status change"):
        values = log["latency"].get(kind, [])
        if values:
            quantiles = statistics.quantiles(values, n=20)
            lines.append(
                f"| {kind} | {len(values):,} | {1000 * statistics.median(values):.0f} | {1000 * quantiles[18]:.0f} |"
            )
    quantiles = statistics.quantiles(every, n=20)
    lines.append(f"| all | {len(every):,} | {1000 * statistics.median(every):.0f} | {1000 * quantiles[18]:.0f} |")
    lines += [
        "",
        f"Errors: {len(log['errors'])}. Status changes accepted: {len(log['accepted']):,}; refused as conflicts (409, "
        f"another reviewer changed the finding first): {log['conflicts']:,}. Lost updates: {len(lost)} (database versions, "
        "statuses and audit entries checked against every accepted change).",
    ]
    report = "\n".join(lines)
    print(report)
    for problem in (log["errors"] + lost)[:20]:
        print("PROBLEM:", problem)
    if args.write:
        from results import write_section

        write_section(
            "review" if backend == "SQLite" else "review-postgresql",
            f"## Review app under load ({backend})\n\n" + report,
            "python benchmarks/review_load.py --write" + (" --database URL" if args.database else ""),
        )
    scratch.cleanup()
    if log["errors"] or lost:
        sys.exit(1)


if __name__ == "__main__":
    main()
