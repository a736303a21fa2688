"""The review app: every route, logins and roles, CSRF, locking, audit, injection, import, on
SQLite and (when $PLASMACOUNT_TEST_POSTGRES names a server, as `.ci/run` does) on PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from plasmacount.review.app import create_app  # noqa: E402
from plasmacount.review.database import session_factory, upgrade  # noqa: E402
from plasmacount.review.records import create_user, import_batch  # noqa: E402

POSTGRES = os.environ.get("PLASMACOUNT_TEST_POSTGRES")
PASSWORDS = {
    "ada": "admin-password-1",
    "rita": "reviewer-password-1",
    "rob": "reviewer-password-2",
    "vic": "viewer-password-1",
}
HOSTILE = "x'); DROP TABLE samples;--<script>alert('pwned')</script>"


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def database(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('review') / 'review.sqlite'}"
        return
    if not POSTGRES:
        pytest.skip("no PostgreSQL server: set PLASMACOUNT_TEST_POSTGRES (`.ci/run` starts one)")
    name = f"plasmacount_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def hostile_results(demo_output, tmp_path_factory) -> Path:
    """A result folder whose sample name is an SQL- and script-injection string."""
    folder = tmp_path_factory.mktemp("hostile") / "hostile_batch"
    folder.mkdir()
    result = json.loads((demo_output / "nipt" / "case_03.nipt.json").read_text())
    result["sample"] = HOSTILE
    (folder / "hostile.nipt.json").write_text(json.dumps(result))
    return folder


@pytest.fixture(scope="module")
def server(database, demo_output, hostile_results):
    upgrade(database)
    upgrade(database)  # a second upgrade is a no-op
    factory = session_factory(database)
    with factory() as session:
        for name, role in (("ada", "admin"), ("rita", "reviewer"), ("rob", "reviewer"), ("vic", "viewer")):
            create_user(session, name, PASSWORDS[name], role, created_by="test")
        first = import_batch(session, [demo_output / "nipt", demo_output / "reports" / "prenatal"], "test", "prenatal")
        again = import_batch(session, [demo_output / "nipt", demo_output / "reports" / "prenatal"], "test", "prenatal")
        assert first.created and not again.created and again.batch.id == first.batch.id
        import_batch(session, hostile_results, "test")
    app = create_app(database)
    yield app, factory
    factory.kw["bind"].dispose()
    app.state.factory.kw["bind"].dispose()


def client(server, name: str | None = None) -> TestClient:
    app, _ = server
    browser = TestClient(app, base_url="http://testserver", follow_redirects=False)
    if name:
        response = log_in(browser, name, PASSWORDS[name], "/")
        assert response.status_code == 303, response.text
    return browser


def log_in(browser: TestClient, username: str, password: str, next: str = "/"):
    """POST /login as the login page's form does: with the login CSRF token it set."""
    form = browser.get("/login").text
    token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
    return browser.post("/login", data={"username": username, "password": password, "next": next, "login_csrf": token})


def csrf_of(browser: TestClient) -> str:
    return browser.get("/api/me").json()["csrf_token"]


def sample_id(browser: TestClient, name: str) -> int:
    return next(s["id"] for s in browser.get("/api/search", params={"q": name[:12]}).json() if s["name"] == name)


def finding(browser: TestClient, sample: int, key: str) -> dict:
    return next(f for f in browser.get(f"/api/samples/{sample}").json()["findings"] if f["key"] == key)


GET_PAGES = [
    "/",
    "/batches/1",
    "/batches/1/overview",
    "/samples/1",
    "/samples/1/report",
    "/search?q=case",
    "/export.csv",
    "/samples/1/export.pdf",
    "/admin/users",
    "/samples/1/case_01_data/z_scores.tsv",
    "/batches/1/case_01.html",
    "/batches/1/batch_data/samples.tsv",
]
GET_API = ["/api/batches", "/api/batches/1", "/api/samples/1", "/api/search?q=case", "/api/me"]
POSTS = [
    "/findings/1",
    "/samples/1/comments",
    "/samples/1/signoff",
    "/samples/1/confirm",
    "/batches/upload",
    "/admin/users",
    "/admin/users/1/role",
    "/logout",
]
POST_API = ["/api/findings/1", "/api/samples/1/comments", "/api/samples/1/signoff", "/api/samples/1/confirm"]


def test_every_route_needs_a_login(server):
    anonymous = client(server)
    for path in GET_PAGES + POSTS:
        response = anonymous.get(path) if path in GET_PAGES else anonymous.post(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    for path in GET_API + POST_API:
        response = anonymous.get(path) if path in GET_API else anonymous.post(path, json={})
        assert response.status_code == 401, path
    assert anonymous.get("/login").status_code == 200
    # A forged cookie is no login.
    anonymous.cookies.set("plasmacount_session", "forged")
    assert anonymous.get("/").status_code == 303


def test_pages_and_api_for_a_logged_in_viewer(server):
    viewer = client(server, "vic")
    for path in [
        "/",
        "/batches/1",
        "/batches/1/overview",
        "/samples/1",
        "/samples/1/report",
        "/search?q=case",
        "/export.csv",
    ]:
        assert viewer.get(path).status_code == 200, path
    assert viewer.get("/admin/users").status_code == 403
    batches = viewer.get("/api/batches").json()
    assert [b["name"] for b in batches][:1] == ["prenatal"] and batches[0]["samples"] == 8
    samples = viewer.get("/api/batches/1").json()["samples"]
    assert [s["name"] for s in samples] == [f"case_{i:02d}" for i in range(1, 9)]
    case_03 = sample_id(viewer, "case_03")
    t21 = finding(viewer, case_03, "T21")
    assert t21["automatic"] == "positive" and t21["status"] == "Suspected"
    keys = [f["key"] for f in viewer.get(f"/api/samples/{sample_id(viewer, 'case_07')}").json()["findings"]]
    assert keys[:3] == ["T21", "T18", "T13"] and {"45,X", "47,XXX", "47,XXY", "47,XYY"} <= set(keys)
    assert any(k.startswith("CNV chr22:") for k in keys)
    page = viewer.get(f"/samples/{case_03}").text
    assert "Trisomy 21" in page and "Audit trail" in page and 'action="/findings/' not in page  # no forms for a viewer
    assert viewer.get("/samples/9999").status_code == 404
    # Stored reports are served sandboxed, with no script.
    policy = viewer.get("/samples/1/report").headers["content-security-policy"]
    assert "sandbox" in policy and "allow-scripts" not in policy and "script-src" not in policy


def test_report_links_work_inside_the_app_and_no_page_nests_another(server):
    viewer = client(server, "vic")
    case_03 = sample_id(viewer, "case_03")
    report = viewer.get(f"/samples/{case_03}/report").text
    links = re.findall(r'href="(case_03_data/[^"]+)"', report)
    assert len(links) >= 4
    for link in links:
        data = viewer.get(f"/samples/{case_03}/{link}")
        assert data.status_code == 200 and "\t" in data.text.split("\n", 1)[0] and data.text.count("\n") > 1, link
    assert viewer.get(f"/samples/{case_03}/case_03_data/missing.tsv").status_code == 404
    overview = viewer.get("/batches/1/overview").text
    data_links = re.findall(r'href="(batch_data/[^"]+)"', overview)
    assert data_links and all(viewer.get(f"/batches/1/{link}").status_code == 200 for link in data_links)
    moved = viewer.get("/batches/1/case_03.html")
    assert moved.status_code == 303 and moved.headers["location"] == f"/samples/{case_03}"
    assert viewer.get("/batches/1/nobody.html").status_code == 404
    # The app's pages link to the reports instead of framing them, and the batch page has one table.
    for path in ("/batches/1", f"/samples/{case_03}"):
        assert "<iframe" not in viewer.get(path).text, path
    assert viewer.get("/batches/1").text.count("<table") == 1


def test_a_viewer_cannot_change_anything(server):
    viewer = client(server, "vic")
    token = csrf_of(viewer)
    case_01 = sample_id(viewer, "case_01")
    before = viewer.get(f"/api/samples/{case_01}").json()
    t21 = finding(viewer, case_01, "T21")
    assert (
        viewer.post(
            f"/api/findings/{t21['id']}",
            json={"status": "Verified", "version": t21["version"]},
            headers={"X-CSRF-Token": token},
        ).status_code
        == 403
    )
    assert (
        viewer.post(
            f"/findings/{t21['id']}", data={"status": "Verified", "version": t21["version"], "csrf": token}
        ).status_code
        == 403
    )
    assert viewer.post(f"/samples/{case_01}/comments", data={"text": "hello", "csrf": token}).status_code == 403
    assert (
        viewer.post(f"/samples/{case_01}/signoff", data={"version": before["version"], "csrf": token}).status_code
        == 403
    )
    assert (
        viewer.post(
            "/admin/users", data={"username": "eve", "password": "eve-password-1", "role": "admin", "csrf": token}
        ).status_code
        == 403
    )
    assert viewer.post("/admin/users/4/role", data={"role": "admin", "csrf": token}).status_code == 403
    assert viewer.get(f"/api/samples/{case_01}").json() == before


def test_csrf_token_missing_or_wrong_is_refused(server):
    reviewer = client(server, "rita")
    case_02 = sample_id(reviewer, "case_02")
    t21 = finding(reviewer, case_02, "T21")
    assert (
        reviewer.post(f"/findings/{t21['id']}", data={"status": "Verified", "version": t21["version"]}).status_code
        == 403
    )
    assert (
        reviewer.post(
            f"/findings/{t21['id']}", data={"status": "Verified", "version": t21["version"], "csrf": "wrong"}
        ).status_code
        == 403
    )
    assert (
        reviewer.post(f"/api/findings/{t21['id']}", json={"status": "Verified", "version": t21["version"]}).status_code
        == 403
    )
    other = client(server, "rob")  # another session's token is not this session's
    assert (
        reviewer.post(
            f"/findings/{t21['id']}", data={"status": "Verified", "version": t21["version"], "csrf": csrf_of(other)}
        ).status_code
        == 403
    )
    assert reviewer.post("/logout").status_code == 403
    assert finding(reviewer, case_02, "T21")["status"] == "Normal"


def test_review_sign_off_lock_and_exports(server):
    reviewer = client(server, "rita")
    token = csrf_of(reviewer)
    case_03 = sample_id(reviewer, "case_03")
    t21 = finding(reviewer, case_03, "T21")
    response = reviewer.post(
        f"/findings/{t21['id']}",
        data={"status": "Verified", "version": t21["version"], "comment": "karyotype 47,XX,+21", "csrf": token},
    )
    assert response.status_code == 303 and response.headers["location"] == f"/samples/{case_03}"
    detail = reviewer.get(f"/api/samples/{case_03}").json()
    assert finding(reviewer, case_03, "T21")["status"] == "Verified"
    entry = next(a for a in detail["audit"] if a["action"] == "set status")
    assert (entry["user"], entry["target"], entry["old"], entry["new"]) == (
        "rita",
        "Trisomy 21",
        "Suspected",
        "Verified",
    )
    assert detail["comments"][-1]["text"] == "karyotype 47,XX,+21"
    assert (
        reviewer.post(f"/samples/{case_03}/signoff", data={"version": detail["version"], "csrf": token}).status_code
        == 303
    )
    detail = reviewer.get(f"/api/samples/{case_03}").json()
    assert detail["locked"] and detail["signed_off_by"] == "rita" and detail["audit"][-1]["action"] == "sign off"
    # Locked: no reviewer (nor admin) can change it any more.
    t18 = finding(reviewer, case_03, "T18")
    assert (
        reviewer.post(
            f"/findings/{t18['id']}", data={"status": "Suspected", "version": t18["version"], "csrf": token}
        ).status_code
        == 423
    )
    admin = client(server, "ada")
    assert (
        admin.post(
            f"/api/findings/{t18['id']}",
            json={"status": "Suspected", "version": t18["version"]},
            headers={"X-CSRF-Token": csrf_of(admin)},
        ).status_code
        == 423
    )
    assert reviewer.post(f"/samples/{case_03}/comments", data={"text": "late", "csrf": token}).status_code == 423
    assert finding(reviewer, case_03, "T18")["status"] == "Normal"
    exported = reviewer.get("/export.csv").text
    assert "case_03,rita," in exported and "Trisomy 21,positive,Verified" in exported and "case_01" not in exported
    pdf = reviewer.get(f"/samples/{case_03}/export.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    if shutil.which("pdftotext"):
        # The exported PDF is the report with its sign-off block filled in.
        text = " ".join(
            subprocess.run(["pdftotext", "-", "-"], input=pdf.content, capture_output=True, check=True)
            .stdout.decode()
            .split()
        )
        assert "plasmacount report: case_03" in text and "Signed off by rita" in text and "Reviewed by rita" in text
        assert (
            "Trisomy 21 positive Verified" in text and "karyotype 47,XX,+21" in text and "Not yet reviewed" not in text
        )
    assert reviewer.get(f"/samples/{sample_id(reviewer, 'case_04')}/export.pdf").status_code == 409


def test_two_reviewers_never_overwrite_each_other(server):
    rita, rob = client(server, "rita"), client(server, "rob")
    case_05 = sample_id(rita, "case_05")
    seen_by_rita = finding(rita, case_05, "T13")
    seen_by_rob = finding(rob, case_05, "T13")
    assert (
        rita.post(
            f"/api/findings/{seen_by_rita['id']}",
            json={"status": "Probable", "version": seen_by_rita["version"]},
            headers={"X-CSRF-Token": csrf_of(rita)},
        ).status_code
        == 200
    )
    late = rob.post(
        f"/findings/{seen_by_rob['id']}",
        data={"status": "False positive", "version": seen_by_rob["version"], "csrf": csrf_of(rob)},
    )
    assert late.status_code == 409
    assert "changed by rita" in late.text and "reload" in late.text
    assert finding(rob, case_05, "T13")["status"] == "Probable"
    # Signing off a page that is out of date is refused the same way.
    stale = rob.get(f"/api/samples/{case_05}").json()["version"]
    t21 = finding(rita, case_05, "T21")
    rita.post(
        f"/api/findings/{t21['id']}",
        json={"status": "Normal", "version": t21["version"]},
        headers={"X-CSRF-Token": csrf_of(rita)},
    )
    assert (
        rob.post(
            f"/api/samples/{case_05}/signoff", json={"version": stale}, headers={"X-CSRF-Token": csrf_of(rob)}
        ).status_code
        == 409
    )


def test_injection_strings_are_stored_and_shown_harmlessly(server):
    reviewer = client(server, "rita")
    token = csrf_of(reviewer)
    hostile = sample_id(reviewer, HOSTILE)
    assert reviewer.get(f"/api/samples/{hostile}").json()["name"] == HOSTILE
    comment = "'; DELETE FROM audit; -- <img src=x onerror=alert(1)> <script>alert(2)</script>"
    assert reviewer.post(f"/samples/{hostile}/comments", data={"text": comment, "csrf": token}).status_code == 303
    detail = reviewer.get(f"/api/samples/{hostile}").json()
    assert detail["comments"][-1]["text"] == comment
    page = reviewer.get(f"/samples/{hostile}").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert (
        "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    )
    found = reviewer.get("/search", params={"q": "DROP TABLE"}).text
    assert "&lt;script&gt;" in found and "<script>alert" not in found
    assert reviewer.get("/search", params={"q": "%"}).status_code == 200  # a wildcard is a literal character
    assert len(reviewer.get("/api/batches").json()) == 2  # nothing dropped


def test_login_rate_limit(server):
    # Login cookies are HttpOnly and SameSite=Strict; a redirect target elsewhere is ignored.
    other = client(server)
    response = log_in(other, "vic", PASSWORDS["vic"], "//evil.example/")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and response.headers["location"] == "/"
    browser = client(server)
    for _ in range(5):
        assert log_in(browser, "rob", "wrong password", "/").status_code == 401
    blocked = log_in(browser, "rob", PASSWORDS["rob"], "/")
    assert blocked.status_code == 429 and "Too many failed logins" in blocked.text
    _, factory = server
    with factory() as session:  # the window would otherwise lock the later tests out
        session.execute(text("DELETE FROM login_attempts"))
        session.commit()


def test_admin_manages_users_and_every_change_is_audited(server):
    admin = client(server, "ada")
    token = csrf_of(admin)
    assert admin.get("/admin/users").status_code == 200
    assert (
        admin.post(
            "/admin/users", data={"username": "nina", "password": "nina-password-1", "role": "viewer", "csrf": token}
        ).status_code
        == 303
    )
    assert (
        admin.post(
            "/admin/users", data={"username": "nina", "password": "nina-password-1", "role": "viewer", "csrf": token}
        ).status_code
        == 400
    )
    assert (
        admin.post(
            "/admin/users", data={"username": "short", "password": "short", "role": "viewer", "csrf": token}
        ).status_code
        == 400
    )
    _, factory = server
    with factory() as session:
        nina = session.execute(text("SELECT id FROM users WHERE username = 'nina'")).scalar()
        assert admin.post(f"/admin/users/{nina}/role", data={"role": "reviewer", "csrf": token}).status_code == 303
        rows = session.execute(
            text("SELECT action, target, old_value, new_value FROM audit WHERE target = 'nina' ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("create user", "nina", None, "viewer"),
        ("set role", "nina", "viewer", "reviewer"),
    ]
    nina_client = TestClient(server[0], follow_redirects=False)
    assert log_in(nina_client, "nina", "nina-password-1", "/").status_code == 303


def test_audit_trail_is_append_only(server):
    _, factory = server
    with factory() as session:
        count = session.execute(text("SELECT count(*) FROM audit")).scalar()
        assert count > 0
        first = session.execute(text("SELECT id FROM audit ORDER BY id LIMIT 1")).scalar()
        dialect = session.get_bind().dialect.name
        statements = ["UPDATE audit SET username = 'mallory'", "DELETE FROM audit"]
        if dialect == "sqlite":  # REPLACE deletes the old row without firing DELETE triggers
            statements.append(
                f"INSERT OR REPLACE INTO audit (id, at, username, action, target) VALUES ({first}, '2020-01-01', 'mallory', 'x', '')"
            )
        if dialect == "postgresql":  # TRUNCATE fires no row triggers
            statements.append("TRUNCATE audit")
        for statement in statements:
            with pytest.raises(Exception, match="append-only"):
                session.execute(text(statement))
                session.commit()
            session.rollback()
        assert session.execute(text("SELECT count(*) FROM audit")).scalar() == count
        assert session.execute(text("SELECT username FROM audit WHERE id = :i"), {"i": first}).scalar() != "mallory"


def test_upload_and_logout(server, demo_output, tmp_path):
    archive = tmp_path / "tumour_batch.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted((demo_output / "tumor").glob("*.tumor.json"))[:3]:
            bundle.write(path, f"tumor/{path.name}")
    viewer = client(server, "vic")
    with open(archive, "rb") as stream:
        assert (
            viewer.post(
                "/batches/upload", data={"csrf": csrf_of(viewer)}, files={"archive": ("tumour_batch.zip", stream)}
            ).status_code
            == 403
        )
    reviewer = client(server, "rita")
    with open(archive, "rb") as stream:
        response = reviewer.post(
            "/batches/upload", data={"csrf": csrf_of(reviewer)}, files={"archive": ("tumour_batch.zip", stream)}
        )
    assert response.status_code == 303
    batch = int(response.headers["location"].rsplit("/", 1)[1])
    samples = reviewer.get(f"/api/batches/{batch}").json()["samples"]
    assert [s["name"] for s in samples] == ["patient_0001", "patient_0002", "patient_0003"]
    assert finding(reviewer, samples[1]["id"], "tumour fraction")["label"] == "Tumour fraction"
    with open(archive, "rb") as stream:  # the same upload again: the same batch
        again = reviewer.post(
            "/batches/upload", data={"csrf": csrf_of(reviewer)}, files={"archive": ("tumour_batch.zip", stream)}
        )
    assert again.headers["location"] == response.headers["location"]
    bad = reviewer.post("/batches/upload", data={"csrf": csrf_of(reviewer)}, files={"archive": ("x.zip", b"not a zip")})
    assert bad.status_code == 400
    token = csrf_of(reviewer)
    assert reviewer.post("/logout", data={"csrf": token}).status_code == 303
    assert reviewer.get("/").status_code == 303


def test_import_command_does_not_duplicate(demo_output, tmp_path, run_cli):
    database = tmp_path / "review.sqlite"
    for _ in range(2):
        result = run_cli("import", demo_output / "viral", "--database", database, "--name", "ebv")
        assert result.exit_code == 0, result.stderr
    assert "nothing imported" in result.stderr
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM batches")).scalar() == 1
        assert connection.execute(text("SELECT count(*) FROM samples")).scalar() == 30
    engine.dispose()
    assert run_cli("import", tmp_path / "missing", "--database", database).exit_code == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _served(app):
    """The app behind a real uvicorn server on loopback, for as long as the block runs; yields its URL."""
    import uvicorn

    port = _free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    while not uvicorn_server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (`.ci/run` installs it)"
)
def test_browser_review_session(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")

    app, _ = server
    with _served(app) as base:
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            problems = []
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(base + "/")
            page.fill("input[name=username]", "rob")
            page.fill("input[name=password]", "wrong")
            page.click("button[type=submit]")
            page.fill("input[name=username]", "ada")
            page.fill("input[name=password]", PASSWORDS["ada"])
            page.click("button[type=submit]")
            page.click("text=prenatal")
            page.click("text=case_06")
            row = page.locator("tr", has_text="45,X").first
            row.locator("select").select_option("Verified")
            row.locator("input[name=comment]").fill("confirmed by amniocentesis")
            row.locator("button").click()
            page.click("text=Sign off case_06")
            audit = page.locator("#audit").inner_text()
            assert "sign off" in audit and "set status" in audit and "Verified" in audit and "ada" in audit
            assert "Signed off by ada" in page.content()
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            assert not [p for p in problems if "401" not in p], problems
            browser.close()
    assert (tmp_path / "review.png").stat().st_size > 10_000


# Table cells whose content is wider or taller than the cell: text that would overlap its neighbour.
OVERFLOWING_CELLS = """() => Array.from(document.querySelectorAll('td, th'))
  .filter(c => c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1).map(c => c.textContent.slice(0, 40))"""


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (`.ci/run` installs it)"
)
def test_browser_report_links_bulk_confirmation_and_four_eyes(server, database, tmp_path):
    """In a browser, on an app that keeps the four-eyes rule: a report's plot-data link opens inside
    the app, one click confirms every automatic status, the reviewer who confirmed them cannot sign
    the sample off alone, and a second reviewer can."""
    playwright = pytest.importorskip("playwright.sync_api")

    strict = create_app(database, four_eyes=True)
    try:
        with _served(strict) as base, playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})

            def log_in_as(name: str) -> None:
                page.goto(base + "/login")
                page.fill("input[name=username]", name)
                page.fill("input[name=password]", PASSWORDS[name])
                page.keyboard.press("Enter")  # forms work from the keyboard
                page.wait_for_url(base + "/")

            log_in_as("ada")
            page.click("text=prenatal")
            # The batch page: its one table in the first screen, no cell whose text runs over.
            assert page.locator("table").count() == 1 and page.locator("table").bounding_box()["y"] < 900
            assert page.evaluate(OVERFLOWING_CELLS) == []
            page.click("text=case_08")
            sample_url = page.url
            findings = page.locator("table").first.bounding_box()
            assert findings["y"] < 900 and page.evaluate(OVERFLOWING_CELLS) == []
            page.click("text=Open the report of case_08")
            page.click("a[href$='z_scores.tsv']")
            assert page.url.endswith("/case_08_data/z_scores.tsv") and page.locator("body").inner_text().startswith(
                "chromosome\tz"
            )
            page.goto(sample_url)
            colours = {
                status: page.locator(f".legend .status-{status}").evaluate("e => getComputedStyle(e).backgroundColor")
                for status in ("Normal", "Suspected", "Verified", "Failed")
            }
            assert len(set(colours.values())) == 4, colours
            page.click("text=/Confirm the \\d+ automatic statuses/")
            assert (
                page.locator("text=not yet reviewed").count() == 0 and page.locator("text=reviewed by ada").count() > 5
            )
            assert "confirm status" in page.locator("#audit").inner_text()
            page.click("text=Sign off case_08")
            assert "four-eyes rule" in page.content() and "Signed off by" not in page.content()
            page.click("text=Log out")
            log_in_as("rita")
            page.goto(sample_url)
            page.click("text=Sign off case_08")
            assert "Signed off by rita" in page.content()
            page.screenshot(path=str(tmp_path / "four_eyes.png"), full_page=True)
            browser.close()
    finally:
        strict.state.factory.kw["bind"].dispose()


def test_a_write_waiting_for_a_lock_does_not_freeze_the_server(server):
    """Another process holds sample 1 locked; a comment on it waits for the lock inside a real
    server. While it waits, the login page and a logged-in page are answered, and on PostgreSQL a
    login too (SQLite has one writer per database, so there a login's write waits as well): the
    waiting write holds a worker thread, not the event loop."""
    import httpx2 as httpx
    from sqlalchemy import select

    from plasmacount.review.database import Sample, begin_write

    app, factory = server
    holder = factory()
    on_postgresql = holder.get_bind().dialect.name == "postgresql"
    outcome: dict = {}
    try:
        with _served(app) as base, httpx.Client(base_url=base, follow_redirects=False, timeout=60) as http:
            assert log_in(http, "rita", PASSWORDS["rita"]).status_code == 303
            csrf = http.get("/api/me").json()["csrf_token"]
            begin_write(holder, "sample:1")
            holder.scalar(select(Sample).where(Sample.id == 1).with_for_update())
            holder.execute(text("UPDATE samples SET version = version WHERE id = 1"))  # SQLite: take the write lock now

            def comment() -> None:
                with httpx.Client(base_url=base, cookies=http.cookies, timeout=60) as writer:
                    response = writer.post(
                        "/api/samples/1/comments",
                        json={"text": "written after the lock"},
                        headers={"X-CSRF-Token": csrf},
                    )
                    outcome["status"] = response.status_code
                    outcome["answered_while_locked"] = holder.in_transaction()

            waiting = threading.Thread(target=comment)
            waiting.start()
            time.sleep(1.0)  # let the comment reach the lock (on PostgreSQL, checked just below)
            if on_postgresql:
                with factory() as probe:
                    assert probe.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")) >= 1
            answered = [http.get("/login", timeout=10).status_code, http.get("/batches/1", timeout=10).status_code]
            if on_postgresql:
                with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as other:
                    answered.append(log_in(other, "vic", PASSWORDS["vic"]).status_code)
            assert "status" not in outcome, "the comment did not wait for the lock"
            assert answered == [200, 200] + ([303] if on_postgresql else [])
            holder.rollback()
            waiting.join(timeout=60)
            assert outcome == {"status": 200, "answered_while_locked": False}
    finally:
        holder.rollback()
        holder.close()
        with factory() as session:
            session.execute(text("DELETE FROM login_attempts"))
            session.commit()


def test_user_command(tmp_path, run_cli, monkeypatch):
    database = tmp_path / "users.sqlite"
    monkeypatch.setenv("FIRST_PASSWORD", "first-admin-password")
    result = run_cli(
        "user", "add", "ada", "--role", "admin", "--password-env", "FIRST_PASSWORD", "--database", database
    )
    assert result.exit_code == 0, result.stderr
    again = run_cli("user", "add", "ada", "--role", "admin", "--password-env", "FIRST_PASSWORD", "--database", database)
    assert again.exit_code == 2 and "exists already" in again.stderr
    monkeypatch.setenv("SHORT", "short")
    assert run_cli("user", "add", "bob", "--password-env", "SHORT", "--database", database).exit_code == 2
    assert run_cli("user", "add", "bob", "--password-env", "UNSET_VARIABLE", "--database", database).exit_code == 2


def _own_batch(server, demo_output, tmp_path, prefix: str, n: int) -> list[int]:
    """A fresh batch of n samples (copies of a demo result) for a test that signs them off."""
    folder = tmp_path / f"{prefix}_batch"
    folder.mkdir()
    result = json.loads((demo_output / "nipt" / "case_03.nipt.json").read_text())
    for index in range(n):
        result["sample"] = f"{prefix}_{index:02d}"
        (folder / f"{result['sample']}.nipt.json").write_text(json.dumps(result))
    _, factory = server
    with factory() as session:
        batch = import_batch(session, folder, "test", prefix).batch
        return [s.id for s in batch.samples]


def test_simultaneous_logins_check_at_most_the_limit_of_passwords(server):
    """40 logins for one name at once (39 wrong, 1 right): the count and the attempt are one
    locked step, so no more than FAILED_LOGIN_LIMIT passwords are checked."""
    from concurrent.futures import ThreadPoolExecutor

    from plasmacount.review import security

    _, factory = server
    passwords = ["wrong password"] * 20 + [PASSWORDS["rob"]] + ["wrong password"] * 19

    def attempt(password: str) -> str:
        with factory() as session:
            try:
                return "in" if security.authenticate(session, "rob", password, "10.0.0.1") else "refused"
            except security.TooManyFailures:
                return "limited"

    try:
        with ThreadPoolExecutor(max_workers=40) as pool:
            outcomes = list(pool.map(attempt, passwords))
        with factory() as session:
            checked = session.scalar(text("SELECT count(*) FROM login_attempts WHERE username = 'rob'"))
        assert checked <= security.FAILED_LOGIN_LIMIT + 1  # the limit's failures, plus a right password among them
        assert outcomes.count("limited") >= len(passwords) - checked
        assert outcomes.count("in") <= 1
    finally:
        with factory() as session:
            session.execute(text("DELETE FROM login_attempts"))
            session.commit()


def test_many_reviewers_behind_one_address_log_in_at_once_but_guesses_stop(server):
    """30 reviewers logging in at once from one address (a proxy, a NAT) all get in: unsettled
    attempts count against their own name only. Wrong passwords spread over many names from one
    address stop at the address limit."""
    from concurrent.futures import ThreadPoolExecutor

    from plasmacount.review import security
    from plasmacount.review.database import User, now

    _, factory = server
    names = [f"crowd{index:02d}" for index in range(30)]
    with factory() as session:
        hashed = security.hash_password("crowd-password-1")
        session.add_all(
            User(username=name, password_hash=hashed, role="viewer", active=True, created_at=now()) for name in names
        )
        session.commit()

    def attempt(name: str, password: str) -> str:
        with factory() as session:
            try:
                return "in" if security.authenticate(session, name, password, "10.0.0.9") else "refused"
            except security.TooManyFailures:
                return "limited"

    try:
        with ThreadPoolExecutor(max_workers=30) as pool:
            outcomes = list(pool.map(attempt, names, ["crowd-password-1"] * len(names)))
        assert outcomes == ["in"] * len(names)
        sprayed = [attempt(name, "wrong password") for name in names]  # one guess per name, one address
        assert sprayed == ["refused"] * security.ADDRESS_FAILED_LOGIN_LIMIT + ["limited"] * (
            len(names) - security.ADDRESS_FAILED_LOGIN_LIMIT
        )
        assert attempt("crowd00", "crowd-password-1") == "limited"  # the address stays shut, right password or not
        with factory() as session:  # from another address the name itself is not shut
            assert security.authenticate(session, "crowd00", "crowd-password-1", "10.0.0.10") is not None
        with factory() as session:
            assert session.scalar(text("SELECT count(*) FROM login_attempts WHERE succeeded IS NULL")) == 0
    finally:
        with factory() as session:
            session.execute(text("DELETE FROM login_attempts"))
            session.execute(text("DELETE FROM users WHERE username LIKE 'crowd%'"))
            session.commit()


def test_a_hash_of_older_parameters_verifies_and_is_renewed_at_login(server):
    from argon2 import PasswordHasher

    from plasmacount.review import security
    from plasmacount.review.database import User, now

    _, factory = server
    with factory() as session:
        session.add(
            User(
                username="elder",
                password_hash=PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4).hash("elder-password-1"),
                role="viewer",
                active=True,
                created_at=now(),
            )
        )
        session.commit()
    try:
        with factory() as session:
            assert security.authenticate(session, "elder", "elder-password-1", "10.0.0.11") is not None
            assert session.scalar(text("SELECT password_hash FROM users WHERE username = 'elder'")).startswith(
                "$argon2id$v=19$m=19456,t=2,p=1$"
            )
            assert security.authenticate(session, "elder", "elder-password-1", "10.0.0.11") is not None
    finally:
        with factory() as session:
            session.execute(text("DELETE FROM login_attempts"))
            session.execute(text("DELETE FROM users WHERE username = 'elder'"))
            session.commit()


WORKER = r"""
import sys, time
from plasmacount.review.database import Sample, User, session_factory
from plasmacount.review.records import Conflict, Locked, add_comment, set_finding_status, sign_off
url, role, ids = sys.argv[1], sys.argv[2], [int(i) for i in sys.argv[3].split(",")]
factory = session_factory(url)
for round_ in range(6):
    for sample_id in ids:
        with factory() as session:
            user = session.query(User).filter_by(username="rita" if role == "sign" else "rob").one()
            sample = session.get(Sample, sample_id)
            try:
                if role == "sign":
                    sign_off(session, user, sample_id, sample.version)
                else:
                    finding = sample.findings[round_ % len(sample.findings)]
                    set_finding_status(session, user, finding.id, "Probable" if round_ % 2 else "Verified", finding.version)
                    add_comment(session, user, sample_id, f"round {round_}")
            except (Conflict, Locked):
                session.rollback()
factory.kw["bind"].dispose()
"""


def test_two_server_processes_never_change_a_signed_off_sample(server, database, demo_output, tmp_path):
    """One process signs six samples off while another keeps setting statuses and commenting on
    them: nothing lands on a sample after its sign-off."""
    import sys

    ids = _own_batch(server, demo_output, tmp_path, "race", 6)
    arguments = [database, None, ",".join(map(str, ids))]
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, arguments[0], role, arguments[2]]) for role in ("edit", "sign")
    ]
    for worker in workers:
        assert worker.wait(timeout=300) == 0
    _, factory = server
    with factory() as session:
        for sample_id in ids:
            rows = (
                session.execute(text("SELECT action FROM audit WHERE sample_id = :s ORDER BY id"), {"s": sample_id})
                .scalars()
                .all()
            )
            assert "sign off" in rows, rows
            assert rows[-1] == "sign off" and rows.count("sign off") == 1, rows


def test_a_comment_makes_an_older_page_stale_for_sign_off(server, demo_output, tmp_path):
    [sample] = _own_batch(server, demo_output, tmp_path, "stale", 1)
    rita, rob = client(server, "rita"), client(server, "rob")
    seen = rob.get(f"/api/samples/{sample}").json()["version"]
    assert (
        rita.post(
            f"/samples/{sample}/comments", data={"text": "DO NOT SIGN OFF: repeat the library", "csrf": csrf_of(rita)}
        ).status_code
        == 303
    )
    assert (
        rob.post(
            f"/api/samples/{sample}/signoff", json={"version": seen}, headers={"X-CSRF-Token": csrf_of(rob)}
        ).status_code
        == 409
    )
    fresh = rob.get(f"/api/samples/{sample}").json()["version"]
    assert fresh > seen
    assert (
        rob.post(
            f"/api/samples/{sample}/signoff", json={"version": fresh}, headers={"X-CSRF-Token": csrf_of(rob)}
        ).status_code
        == 200
    )


def test_serve_trusts_no_forwarded_header_unless_asked(monkeypatch, tmp_path, run_cli):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(options))
    assert run_cli("--quiet", "serve", "--database", tmp_path / "a.sqlite").exit_code == 0
    assert seen["proxy_headers"] is False and seen["forwarded_allow_ips"] == ""
    assert (
        run_cli("--quiet", "serve", "--database", tmp_path / "b.sqlite", "--forwarded-allow-ips", "10.1.2.3").exit_code
        == 0
    )
    assert seen["proxy_headers"] is True and seen["forwarded_allow_ips"] == "10.1.2.3"
    result = run_cli("serve", "--database", tmp_path / "c.sqlite", "--port", "99999")
    assert result.exit_code == 2 and "--port" in result.stderr


def test_access_can_be_removed_and_an_admin_always_remains(tmp_path, run_cli, monkeypatch):
    """Disable, password reset and 'log out everywhere' end a user's sessions at once; the last
    active admin can neither demote nor disable herself; `user` without a terminal says how."""
    database = tmp_path / "access.sqlite"
    monkeypatch.setenv("ADA", "admin-password-1")
    monkeypatch.setenv("BOB", "reviewer-password-9")
    assert (
        run_cli("user", "add", "ada", "--role", "admin", "--password-env", "ADA", "--database", database).exit_code == 0
    )
    assert (
        run_cli("user", "add", "bob", "--role", "reviewer", "--password-env", "BOB", "--database", database).exit_code
        == 0
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    no_terminal = run_cli("user", "add", "cy", "--database", database)
    assert no_terminal.exit_code == 2 and "--password-env" in no_terminal.stderr
    app = create_app(f"sqlite:///{database}")
    browsers = {}
    for name, password in (("ada", "admin-password-1"), ("bob", "reviewer-password-9")):
        browsers[name] = TestClient(app, base_url="http://testserver", follow_redirects=False)
        assert log_in(browsers[name], name, password).status_code == 303
    ada, bob = browsers["ada"], browsers["bob"]
    token = csrf_of(ada)
    ids = {u: i for u, i in [("ada", 1), ("bob", 2)]}
    # The last admin stays.
    assert ada.post(f"/admin/users/{ids['ada']}/role", data={"role": "viewer", "csrf": token}).status_code == 400
    assert ada.post(f"/admin/users/{ids['ada']}/active", data={"active": "no", "csrf": token}).status_code == 400
    assert run_cli("user", "disable", "ada", "--database", database).exit_code == 2
    # Log out everywhere, then a reset password, then disabling: each ends bob's session.
    assert bob.get("/api/me").status_code == 200
    assert ada.post(f"/admin/users/{ids['bob']}/sessions", data={"csrf": token}).status_code == 303
    assert bob.get("/api/me").status_code in (401, 303)
    assert log_in(bob, "bob", "reviewer-password-9", "/").status_code == 303
    assert (
        ada.post(
            f"/admin/users/{ids['bob']}/password", data={"password": "a-new-password-7", "csrf": token}
        ).status_code
        == 303
    )
    assert bob.get("/api/me").status_code in (401, 303)
    assert log_in(bob, "bob", "reviewer-password-9", "/").status_code == 401
    assert log_in(bob, "bob", "a-new-password-7", "/").status_code == 303
    assert run_cli("user", "disable", "bob", "--database", database).exit_code == 0
    assert bob.get("/api/me").status_code in (401, 303)
    assert log_in(bob, "bob", "a-new-password-7", "/").status_code == 401
    assert run_cli("user", "enable", "bob", "--database", database).exit_code == 0
    assert log_in(bob, "bob", "a-new-password-7", "/").status_code == 303
    factory = app.state.factory
    with factory() as session:
        actions = session.execute(text("SELECT action FROM audit WHERE target = 'bob' ORDER BY id")).scalars().all()
    assert actions == ["create user", "end sessions", "set password", "disable user", "enable user"]
    factory.kw["bind"].dispose()


def test_bodies_and_comments_have_limits(server, demo_output, tmp_path):
    """A 2 MiB form is refused before it is read (413), a comment over 10,000 characters is
    refused (400), and nothing is stored."""
    [sample] = _own_batch(server, demo_output, tmp_path, "limits", 1)
    rita = client(server, "rita")
    token = csrf_of(rita)
    huge = rita.post(f"/samples/{sample}/comments", data={"text": "x" * (2 * 1024 * 1024), "csrf": token})
    assert huge.status_code == 413
    long = rita.post(f"/api/samples/{sample}/comments", json={"text": "y" * 10_001}, headers={"X-CSRF-Token": token})
    assert long.status_code == 400 and "10,000" in long.text
    assert rita.get(f"/api/samples/{sample}").json()["comments"] == []
    lying = rita.post(
        "/batches/upload", headers={"Content-Length": str(300 * 1024 * 1024), "X-CSRF-Token": token}, content=b""
    )
    assert lying.status_code == 413


def test_database_problems_are_one_line(tmp_path, run_cli, monkeypatch):
    """A PNG or a folder as the database, a missing folder, a bad URL, an unreachable server:
    one line each from import, user and serve, never a traceback; a bad result folder stops
    import before any database is made."""
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    (tmp_path / "folder").mkdir()
    monkeypatch.setenv("PW", "a-long-password-1")
    cases = [
        png,
        tmp_path / "folder",
        tmp_path / "missing" / "db.sqlite",
        "nosuchdialect://x",
        "postgresql+psycopg://u:secret@127.0.0.1:1/db",
    ]
    for database in cases:
        for arguments in (["user", "add", "ada", "--password-env", "PW"], ["serve"]):
            result = run_cli(*arguments, "--database", database)
            assert result.exit_code in (1, 2), (arguments, database)
            assert (
                result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and "secret" not in result.stderr
            ), result.stderr
    fresh = tmp_path / "fresh.sqlite"
    assert run_cli("import", tmp_path / "folder", "--database", fresh).exit_code == 2
    assert not fresh.exists()


def test_login_needs_the_login_forms_token(server):
    """Login CSRF: a POST /login without the token the login page set (another site's form) is refused."""
    browser = client(server)
    assert (
        browser.post("/login", data={"username": "vic", "password": PASSWORDS["vic"], "next": "/"}).status_code == 403
    )
    browser.get("/login")
    forged = browser.post(
        "/login", data={"username": "vic", "password": PASSWORDS["vic"], "next": "/", "login_csrf": "guessed"}
    )
    assert forged.status_code == 403 and "plasmacount_session" not in forged.headers.get("set-cookie", "")
    assert log_in(browser, "vic", PASSWORDS["vic"]).status_code == 303


def test_no_bare_500s(server, demo_output, tmp_path):
    """Ids beyond any database integer, a zip with an encrypted or Deflate64 or unreadable member, a
    malformed result, hostile upload names, a PDF of a sample named with quotes and non-ASCII
    letters and a TeX-like comment: each gets a clean answer (4xx, or the file)."""
    rita = client(server, "rita")
    token = csrf_of(rita)
    assert rita.get(f"/samples/{2**63}").status_code == 404
    assert rita.get(f"/api/samples/{2**64}").status_code == 404
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("x.nipt.json", json.dumps({"sample": "x", "calls": "not a list"}))
    for name in ("..", "/", "x" * 300 + ".zip", "a\\\\b.zip"):
        with open(broken, "rb") as stream:
            response = rita.post(
                "/batches/upload", files={"archive": (name, stream, "application/zip")}, data={"csrf": token}
            )
        assert response.status_code in (303, 400), (name, response.status_code)
        assert "/tmp" not in response.text, response.text
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    with open(garbage, "rb") as stream:
        assert (
            rita.post(
                "/batches/upload", files={"archive": ("g.zip", stream, "application/zip")}, data={"csrf": token}
            ).status_code
            == 400
        )
    result = (demo_output / "nipt" / "case_03.nipt.json").read_bytes()
    deflate64 = io.BytesIO()  # a stored member relabelled as method 9, as Windows writes Deflate64
    with zipfile.ZipFile(deflate64, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("case_03.nipt.json", result)
    raw = bytearray(deflate64.getvalue())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = raw.index(signature)
        raw[start + offset : start + offset + 2] = (9).to_bytes(2, "little")
    uploads = {"deflate64.zip": (bytes(raw), "compressed with Deflate64")}
    if shutil.which("zip"):
        (tmp_path / "secret").mkdir()
        (tmp_path / "secret" / "case_03.nipt.json").write_bytes(result)
        subprocess.run(
            ["zip", "-q", "-e", "-P", "a-password", "-r", str(tmp_path / "secret.zip"), "case_03.nipt.json"],
            cwd=tmp_path / "secret",
            check=True,
        )
        uploads["secret.zip"] = ((tmp_path / "secret.zip").read_bytes(), "is encrypted")
    for name, (content, reason) in uploads.items():
        response = rita.post(
            "/batches/upload", files={"archive": (name, content, "application/zip")}, data={"csrf": token}
        )
        assert response.status_code == 400 and reason in response.text and "case_03.nipt.json" in response.text, (
            response.text
        )
        assert "/tmp" not in response.text
    [sample] = _own_batch(server, demo_output, tmp_path, 'Łódź_"01"', 1)
    assert (
        rita.post(
            f"/samples/{sample}/comments", data={"text": r"$\undefinedcommand$ and $x^", "csrf": token}
        ).status_code
        == 303
    )
    version = rita.get(f"/api/samples/{sample}").json()["version"]
    assert (
        rita.post(
            f"/api/samples/{sample}/signoff", json={"version": version}, headers={"X-CSRF-Token": token}
        ).status_code
        == 200
    )
    pdf = rita.get(f"/samples/{sample}/export.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert (
        "filename*=UTF-8''" in pdf.headers["content-disposition"] and '"01"' not in pdf.headers["content-disposition"]
    )
    exported = rita.get("/export.csv").text
    assert "\n\t" not in exported and ",\t" not in exported


def _api(browser: TestClient, method: str, path: str, **body):
    return (
        browser.post(path, json=body, headers={"X-CSRF-Token": csrf_of(browser)})
        if method == "post"
        else browser.get(path)
    )


def test_bulk_confirmation_is_one_step_audited_item_by_item(server, demo_output, tmp_path):
    [sample] = _own_batch(server, demo_output, tmp_path, "bulk", 1)
    rita = client(server, "rita")
    before = rita.get(f"/api/samples/{sample}").json()
    t21 = next(f for f in before["findings"] if f["key"] == "T21")
    assert (
        _api(rita, "post", f"/api/findings/{t21['id']}", status="Verified", version=t21["version"]).status_code == 200
    )
    # A page opened before that change confirms nothing.
    assert _api(rita, "post", f"/api/samples/{sample}/confirm", version=before["version"]).status_code == 409
    current = rita.get(f"/api/samples/{sample}").json()
    assert "Confirm the" in rita.get(f"/samples/{sample}").text
    assert (
        _api(client(server, "vic"), "post", f"/api/samples/{sample}/confirm", version=current["version"]).status_code
        == 403
    )
    assert _api(rita, "post", f"/api/samples/{sample}/confirm", version=current["version"]).status_code == 200
    after = rita.get(f"/api/samples/{sample}").json()
    assert [f["status"] for f in after["findings"]] == [f["status"] for f in current["findings"]]
    assert all(f["reviewed_by"] == "rita" for f in after["findings"])
    confirmed = [a for a in after["audit"] if a["action"] == "confirm status"]
    assert sorted(a["target"] for a in confirmed) == sorted(f["label"] for f in after["findings"] if f["key"] != "T21")
    assert all(a["old"] == a["new"] and a["user"] == "rita" for a in confirmed)
    assert "Confirm the" not in rita.get(f"/samples/{sample}").text  # nothing left to confirm


def test_four_eyes_rule(server, database, demo_output, tmp_path):
    first, second = _own_batch(server, demo_output, tmp_path, "foureyes", 2)
    strict = create_app(database, four_eyes=True)
    try:
        rita, rob = (TestClient(strict, base_url="http://testserver", follow_redirects=False) for _ in range(2))
        for browser, name in ((rita, "rita"), (rob, "rob")):
            assert log_in(browser, name, PASSWORDS[name]).status_code == 303
        # Reviewed and signed by one person only: refused, in the app's words.
        version = rita.get(f"/api/samples/{first}").json()["version"]
        assert _api(rita, "post", f"/api/samples/{first}/confirm", version=version).status_code == 200
        version = rita.get(f"/api/samples/{first}").json()["version"]
        refused = _api(rita, "post", f"/api/samples/{first}/signoff", version=version)
        assert refused.status_code == 403 and "four-eyes" in refused.json()["detail"]
        assert "Four-eyes rule" in rita.get(f"/samples/{first}").text
        # Reviewed by rita, signed off by rob: accepted. Nobody reviewed: refused even so.
        signed = _api(rob, "post", f"/api/samples/{first}/signoff", version=version)
        assert signed.status_code == 200 and rob.get(f"/api/samples/{first}").json()["signed_off_by"] == "rob"
        version = rob.get(f"/api/samples/{second}").json()["version"]
        assert _api(rob, "post", f"/api/samples/{second}/signoff", version=version).status_code == 403
        # Without the rule (the default app) one person may do both.
        plain = client(server, "rob")
        assert _api(plain, "post", f"/api/samples/{second}/signoff", version=version).status_code == 200
    finally:
        strict.state.factory.kw["bind"].dispose()
