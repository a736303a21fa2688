"""The review app's routes: server-rendered pages (Jinja2, no JavaScript needed) and a JSON API.

Every page and API call needs a login; every form and API write needs the session's CSRF token.
Viewers read; reviewers also set statuses, comment and sign off; admins also manage users.
"""

from __future__ import annotations

import csv
import hmac
import io
import secrets
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from plasmacount.errors import PlasmacountError
from plasmacount.files import sample_file_stem
from plasmacount.results import read_results
from plasmacount.review import records, security
from plasmacount.review.database import (
    ROLES,
    STATUSES,
    AuditEntry,
    Batch,
    Finding,
    LoginSession,
    ReportFile,
    Sample,
    User,
    session_factory,
)

COOKIE = "plasmacount_session"
LOGIN_COOKIE = "plasmacount_login"
BODY_LIMIT = 1024 * 1024  # forms and JSON: a comment, a status
UPLOAD_LIMIT = 200 * 1024 * 1024  # a zipped result folder
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
APP_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-src 'self'; form-action 'self'; frame-ancestors 'self'"
# A stored report may come from any upload: it runs no script at all (sandbox without allow-scripts)
# and loads nothing. It keeps the app's origin so that its links (plot data, sample pages) are
# same-site navigations that carry the SameSite=Strict session cookie.
REPORT_POLICY = (
    "sandbox allow-same-origin allow-downloads; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
)


class LoginRequired(Exception):
    pass


def create_app(database_url: str, secure_cookies: bool = False, four_eyes: bool = False) -> FastAPI:
    """The app on an upgraded database (run `database.upgrade` first). `four_eyes`: nobody signs off
    a sample that only they reviewed."""
    app = FastAPI(title="plasmacount review", docs_url=None, redoc_url=None, openapi_url=None)
    factory = session_factory(database_url)
    app.state.factory = factory

    def database():
        session = factory()
        try:
            yield session
        finally:
            session.close()

    def login(request: Request, session: Session = Depends(database)) -> LoginSession:
        record = security.find_session(session, request.cookies.get(COOKIE))
        if record is None:
            raise LoginRequired()
        return record

    def checked(request: Request, record: LoginSession, supplied: str | None) -> None:
        if not security.csrf_matches(record, supplied or request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")

    def page(
        request: Request, template: str, record: LoginSession | None, status_code: int = 200, **context
    ) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request,
            template,
            {
                "me": record.user if record else None,
                "csrf": record.csrf_token if record else "",
                "statuses": STATUSES,
                "roles": ROLES,
                **context,
            },
            status_code=status_code,
        )

    @app.middleware("http")
    async def headers(request: Request, call_next):
        # Sizes are judged before a byte of the body is read: a 1 GiB upload or a 50 MiB comment
        # is refused at once, not after it has been spooled.
        # An id no database integer holds (>= 2^63) names no record; the driver would raise instead.
        if any(part.isdigit() and int(part) > 2**63 - 1 for part in request.url.path.split("/")):
            return PlainTextResponse("no such record", status_code=404)
        if request.method in ("POST", "PUT", "PATCH"):
            limit = UPLOAD_LIMIT if request.url.path == "/batches/upload" else BODY_LIMIT
            length = request.headers.get("content-length")
            if length is None and request.headers.get("transfer-encoding"):
                return PlainTextResponse("send the body with a Content-Length", status_code=411)
            if length is not None and (not length.isdigit() or int(length) > limit):
                return PlainTextResponse(f"the body is over the limit of {limit // (1024 * 1024)} MiB", status_code=413)
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", APP_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(DBAPIError)
    async def database_unavailable(request: Request, error: DBAPIError):
        # A read-only database, a full disk, a lock held too long: a clean page, not a bare 500.
        reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else "database error"
        message = f"The database cannot be used right now ({reason}); nothing was saved. Try again, or ask an admin to check it."
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=503)
        return PlainTextResponse(message, status_code=503)

    @app.exception_handler(LoginRequired)
    async def needs_login(request: Request, _error: LoginRequired):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "login required"}, status_code=401)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    def failure(request: Request, record: LoginSession, status: int, message: str, back: str):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=status)
        return page(request, "message.html", record, status_code=status, title="Not saved", message=message, back=back)

    def guarded(request: Request, record: LoginSession, back: str, action):
        try:
            action()
        except records.Conflict as error:
            return failure(request, record, 409, str(error), back)
        except records.Locked as error:
            return failure(request, record, 423, str(error), back)
        except records.Forbidden as error:
            return failure(request, record, 403, str(error), back)
        except KeyError:
            return failure(request, record, 404, "no such record", back)
        except PlasmacountError as error:
            return failure(request, record, 400, str(error), back)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"ok": True})
        return RedirectResponse(back, status_code=303)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    # ------------------------------------------------------------------ login

    def login_form(request: Request, status_code: int = 200, next: str = "/", error: str | None = None) -> HTMLResponse:
        """The login page with a login CSRF token, double-submitted: in a cookie and in the form,
        so another site cannot log a browser into an account of its choosing."""
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = page(
            request, "login.html", None, status_code=status_code, next=_local(next), error=error, login_csrf=token
        )
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure_cookies, max_age=3600)
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/"):
        return login_form(request, next=next)

    @app.post("/login")
    def login_submit(
        request: Request,
        username: str = Form(...),
        password: str = Form(...),
        next: str = Form("/"),
        login_csrf: str = Form(None),
        session: Session = Depends(database),
    ):
        expected = request.cookies.get(LOGIN_COOKIE)
        if not expected or not login_csrf or not hmac.compare_digest(expected, login_csrf):
            return login_form(
                request, 403, next, "The login form was not sent from this site or has expired; log in again."
            )
        client = request.client.host if request.client else "unknown"
        try:
            user = security.authenticate(session, username, password, client)
        except security.TooManyFailures:
            return login_form(request, 429, next, "Too many failed logins; wait 15 minutes or ask an admin.")
        if user is None:
            return login_form(request, 401, next, "Wrong user name or password.")
        token, _ = security.open_session(session, user)
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=secure_cookies,
            max_age=security.SESSION_HOURS * 3600,
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    def logout(
        request: Request,
        csrf: str = Form(None),
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        checked(request, record, csrf)
        security.close_session(session, request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse)
    def batches(request: Request, record: LoginSession = Depends(login), session: Session = Depends(database)):
        rows = session.execute(
            select(Batch, func.count(Sample.id), func.count(Sample.signed_off_at))
            .outerjoin(Sample)
            .group_by(Batch.id)
            .order_by(Batch.imported_at.desc(), Batch.id.desc())
        ).all()
        return page(request, "batches.html", record, batches=rows)

    @app.get("/batches/{batch_id}", response_class=HTMLResponse)
    def batch_page(
        request: Request, batch_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise HTTPException(404, "no such batch")
        return page(request, "batch.html", record, batch=batch, samples=[_summary(s) for s in batch.samples])

    @app.get("/batches/{batch_id}/overview", response_class=HTMLResponse)
    def batch_overview(batch_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)):
        batch = session.get(Batch, batch_id)
        return _stored_page(batch.overview_html if batch else None, "no overview for this batch")

    @app.get("/batches/{batch_id}/{page_name}")
    def batch_link(
        batch_id: int, page_name: str, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        """A sample link of the batch overview (`case_03.html`) leads to that sample's page in the app."""
        batch = session.get(Batch, batch_id)
        stem = page_name.removesuffix(".html")
        match = (
            next((s for s in batch.samples if sample_file_stem(s.name) == stem), None)
            if batch and page_name.endswith(".html")
            else None
        )
        if match is None:
            raise HTTPException(404, "no such sample in this batch")
        return RedirectResponse(f"/samples/{match.id}", status_code=303)

    @app.get("/batches/{batch_id}/{folder}/{name}")
    def batch_data(
        batch_id: int,
        folder: str,
        name: str,
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        return _report_file(session, batch_id, folder, name)

    @app.get("/samples/{sample_id}/{folder}/{name}")
    def sample_data(
        sample_id: int,
        folder: str,
        name: str,
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        sample = session.get(Sample, sample_id)
        if sample is None:
            raise HTTPException(404, "no such sample")
        return _report_file(session, sample.batch_id, folder, name)

    @app.post("/samples/{sample_id}/confirm")
    @app.post("/api/samples/{sample_id}/confirm")
    async def confirm_submit(
        request: Request, sample_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        values = await _values(request)
        checked(request, record, values.get("csrf"))
        return await run_in_threadpool(
            guarded,
            request,
            record,
            f"/samples/{sample_id}",
            lambda: records.confirm_automatic(session, record.user, sample_id, _integer(values.get("version"))),
        )

    @app.get("/samples/{sample_id}", response_class=HTMLResponse)
    def sample_page(
        request: Request, sample_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        sample = session.get(Sample, sample_id)
        if sample is None:
            raise HTTPException(404, "no such sample")
        trail = session.scalars(
            select(AuditEntry).where(AuditEntry.sample_id == sample_id).order_by(AuditEntry.id.desc())
        ).all()
        return page(
            request,
            "sample.html",
            record,
            sample=sample,
            summary=_summary(sample),
            audit=trail,
            can_review=record.user.role in ("reviewer", "admin") and not sample.locked,
            unreviewed=sum(f.updated_by is None for f in sample.findings),
            four_eyes=four_eyes,
            reviewers=records.reviewers_of(session, sample.id),
        )

    @app.get("/samples/{sample_id}/report", response_class=HTMLResponse)
    def sample_report(sample_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)):
        sample = session.get(Sample, sample_id)
        return _stored_page(sample.report_html if sample else None, "no report for this sample")

    @app.get("/search", response_class=HTMLResponse)
    def search(
        request: Request, q: str = "", record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        found = []
        if q.strip():
            found = _matching(session, q)
        return page(request, "search.html", record, query=q, found=found)

    @app.post("/findings/{finding_id}")
    @app.post("/api/findings/{finding_id}")
    async def finding_submit(
        request: Request, finding_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        values = await _values(request)
        checked(request, record, values.get("csrf"))

        def change():  # database work off the event loop: a waiting lock must not freeze the server
            finding = session.get(Finding, finding_id)
            back = f"/samples/{finding.sample_id}" if finding else "/"
            return guarded(
                request,
                record,
                back,
                lambda: records.set_finding_status(
                    session,
                    record.user,
                    finding_id,
                    str(values.get("status", "")),
                    _integer(values.get("version")),
                    values.get("comment"),
                ),
            )

        return await run_in_threadpool(change)

    @app.post("/samples/{sample_id}/comments")
    @app.post("/api/samples/{sample_id}/comments")
    async def comment_submit(
        request: Request, sample_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        values = await _values(request)
        checked(request, record, values.get("csrf"))
        return await run_in_threadpool(
            guarded,
            request,
            record,
            f"/samples/{sample_id}",
            lambda: records.add_comment(session, record.user, sample_id, str(values.get("text", ""))),
        )

    @app.post("/samples/{sample_id}/signoff")
    @app.post("/api/samples/{sample_id}/signoff")
    async def signoff_submit(
        request: Request, sample_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        values = await _values(request)
        checked(request, record, values.get("csrf"))
        return await run_in_threadpool(
            guarded,
            request,
            record,
            f"/samples/{sample_id}",
            lambda: records.sign_off(session, record.user, sample_id, _integer(values.get("version")), four_eyes),
        )

    @app.post("/batches/upload")
    def upload(
        request: Request,
        archive: UploadFile = File(...),
        csrf: str = Form(None),
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        checked(request, record, csrf)
        if record.user.role not in ("reviewer", "admin"):
            return failure(request, record, 403, "a viewer cannot import batches", "/")
        # The file name is the uploader's: it names the batch, never a path on this server.
        name = _batch_name(archive.filename)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "batch"
            hide = lambda text: str(text).replace(str(folder) + "/", "").replace(str(folder), name).replace(scratch, "")  # noqa: E731
            try:
                _safe_extract(archive.file, folder)
                result = records.import_batch(session, folder, record.user.username, name)
            except (
                zipfile.BadZipFile,
                zipfile.LargeZipFile,
                ValueError,
                NotImplementedError,
                RuntimeError,
                EOFError,
            ) as error:
                return failure(request, record, 400, f"not a usable zip of a result folder: {hide(error)}", "/")
            except PlasmacountError as error:
                return failure(request, record, 400, hide(error), "/")
            except (KeyError, TypeError, AttributeError, IndexError) as error:
                session.rollback()
                return failure(
                    request,
                    record,
                    400,
                    f"a result in the zip is not a plasmacount result (missing or malformed {hide(error)})",
                    "/",
                )
        return RedirectResponse(f"/batches/{result.batch.id}", status_code=303)

    @app.get("/export.csv")
    def export_csv(
        batch: int | None = None, record: LoginSession = Depends(login), session: Session = Depends(database)
    ):
        query = select(Sample).where(Sample.signed_off_at.is_not(None)).order_by(Sample.batch_id, Sample.name)
        if batch is not None:
            query = query.where(Sample.batch_id == batch)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            ["batch", "sample", "signed_off_by", "signed_off_at", "finding", "automatic", "status", "detail"]
        )
        for sample in session.scalars(query):
            for finding in sample.findings:
                writer.writerow(
                    [
                        _cell(sample.batch.name),
                        _cell(sample.name),
                        _cell(sample.signed_off_by or ""),
                        f"{sample.signed_off_at:%Y-%m-%d %H:%M:%S}",
                        _cell(finding.label),
                        _cell(finding.automatic),
                        _cell(finding.status),
                        _cell(finding.detail),
                    ]
                )
        return Response(
            buffer.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="signed_off_results.csv"'},
        )

    @app.get("/samples/{sample_id}/export.pdf")
    def export_pdf(sample_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)):
        sample = session.get(Sample, sample_id)
        if sample is None:
            raise HTTPException(404, "no such sample")
        if not sample.locked:
            raise HTTPException(409, "only signed-off results are exported")
        return Response(
            _result_pdf(session, sample),
            media_type="application/pdf",
            headers={"Content-Disposition": _attachment(f"{sample.name}.pdf")},
        )

    # ------------------------------------------------------------------ users

    @app.get("/admin/users", response_class=HTMLResponse)
    def users_page(request: Request, record: LoginSession = Depends(login), session: Session = Depends(database)):
        if record.user.role != "admin":
            return failure(request, record, 403, "only admins manage users", "/")
        return page(request, "users.html", record, users=session.scalars(select(User).order_by(User.username)).all())

    @app.post("/admin/users")
    def users_create(
        request: Request,
        username: str = Form(...),
        password: str = Form(...),
        role: str = Form(...),
        csrf: str = Form(None),
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        checked(request, record, csrf)
        if record.user.role != "admin":
            return failure(request, record, 403, "only admins manage users", "/")
        return guarded(
            request,
            record,
            "/admin/users",
            lambda: records.create_user(session, username, password, role, record.user.username),
        )

    @app.post("/admin/users/{user_id}/role")
    def users_role(
        request: Request,
        user_id: int,
        role: str = Form(...),
        csrf: str = Form(None),
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        checked(request, record, csrf)
        return guarded(request, record, "/admin/users", lambda: records.set_role(session, record.user, user_id, role))

    @app.post("/admin/users/{user_id}/active")
    def users_active(
        request: Request,
        user_id: int,
        active: str = Form(...),
        csrf: str = Form(None),
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        checked(request, record, csrf)
        return guarded(
            request, record, "/admin/users", lambda: records.set_active(session, record.user, user_id, active == "yes")
        )

    @app.post("/admin/users/{user_id}/password")
    def users_password(
        request: Request,
        user_id: int,
        password: str = Form(...),
        csrf: str = Form(None),
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        checked(request, record, csrf)
        return guarded(
            request, record, "/admin/users", lambda: records.set_password(session, record.user, user_id, password)
        )

    @app.post("/admin/users/{user_id}/sessions")
    def users_sessions(
        request: Request,
        user_id: int,
        csrf: str = Form(None),
        record: LoginSession = Depends(login),
        session: Session = Depends(database),
    ):
        checked(request, record, csrf)
        return guarded(request, record, "/admin/users", lambda: records.end_sessions(session, record.user, user_id))

    # ------------------------------------------------------------------ API reads

    @app.get("/api/batches")
    def api_batches(record: LoginSession = Depends(login), session: Session = Depends(database)):
        return [
            {"id": b.id, "name": b.name, "imported_at": b.imported_at.isoformat(), "samples": len(b.samples)}
            for b in session.scalars(select(Batch).order_by(Batch.id))
        ]

    @app.get("/api/batches/{batch_id}")
    def api_batch(batch_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)):
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise HTTPException(404, "no such batch")
        return {
            "id": batch.id,
            "name": batch.name,
            "samples": [{"id": s.id, "name": s.name, **_summary(s)} for s in batch.samples],
        }

    @app.get("/api/samples/{sample_id}")
    def api_sample(sample_id: int, record: LoginSession = Depends(login), session: Session = Depends(database)):
        sample = session.get(Sample, sample_id)
        if sample is None:
            raise HTTPException(404, "no such sample")
        trail = session.scalars(
            select(AuditEntry).where(AuditEntry.sample_id == sample_id).order_by(AuditEntry.id)
        ).all()
        return {
            "id": sample.id,
            "name": sample.name,
            "batch": sample.batch.name,
            "version": sample.version,
            "signed_off_by": sample.signed_off_by,
            "locked": sample.locked,
            "findings": [
                {
                    "id": f.id,
                    "key": f.key,
                    "label": f.label,
                    "automatic": f.automatic,
                    "detail": f.detail,
                    "status": f.status,
                    "version": f.version,
                    "reviewed_by": f.updated_by,
                }
                for f in sample.findings
            ],
            "comments": [{"author": c.author, "at": c.at.isoformat(), "text": c.text} for c in sample.comments],
            "audit": [
                {
                    "at": a.at.isoformat(),
                    "user": a.username,
                    "action": a.action,
                    "target": a.target,
                    "old": a.old_value,
                    "new": a.new_value,
                }
                for a in trail
            ],
        }

    @app.get("/api/search")
    def api_search(q: str, record: LoginSession = Depends(login), session: Session = Depends(database)):
        return [{"id": s.id, "name": s.name, "batch": s.batch.name} for s in _matching(session, q)]

    @app.get("/api/me")
    def api_me(record: LoginSession = Depends(login)):
        return {"username": record.user.username, "role": record.user.role, "csrf_token": record.csrf_token}

    return app


def _report_file(session: Session, batch_id: int, folder: str, name: str) -> PlainTextResponse:
    """A plot's data file kept at import (`case_03_data/z_scores.tsv`), shown as text."""
    found = (
        session.scalar(select(ReportFile).where(ReportFile.batch_id == batch_id, ReportFile.path == f"{folder}/{name}"))
        if folder.endswith("_data")
        else None
    )
    if found is None:
        raise HTTPException(404, f"{folder}/{name} was not imported with this batch")
    return PlainTextResponse(found.content, headers={"Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}"})


def _stored_page(page: str | None, missing: str) -> HTMLResponse:
    """A report page kept at import, served sandboxed (REPORT_POLICY)."""
    if not page:
        raise HTTPException(404, missing)
    return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_POLICY})


def _summary(sample: Sample) -> dict:
    """The line of a sample in a batch table: its calls and flags."""
    results = sample.results
    nipt, _, _ = read_results(results)
    flagged = [f.label for f in sample.findings if f.status not in ("Normal",)]
    ff = nipt.fetal_fraction if nipt else None
    return {
        "qc": nipt.qc_status if nipt else "",
        "sex": nipt.fetal_sex if nipt else "",
        "fetal_fraction": "" if ff is None else f"{100 * ff:.1f}",
        "flags": flagged,
        "signed_off": sample.signed_off_by or "",
        "analyses": sorted(results),
    }


def _matching(session: Session, query: str, limit: int = 200) -> list[Sample]:
    """Samples whose ID contains `query` (its % and _ taken literally)."""
    pattern = "%" + query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(
        session.scalars(select(Sample).where(Sample.name.like(pattern, escape="\\")).order_by(Sample.name).limit(limit))
    )


def _local(target: str) -> str:
    """Only same-site paths as redirect targets (no open redirects)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _integer(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _cell(value: str) -> str:
    """A CSV cell that spreadsheet programs will not run as a formula (OWASP: also a leading TAB
    or carriage return, which some strip before they look)."""
    value = str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _attachment(filename: str) -> str:
    """A Content-Disposition header for any file name: an ASCII fallback without quotes or
    separators, and the real name in RFC 5987 form (headers must be Latin-1; a '"' broke it)."""
    fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._-+") else "_" for c in filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _batch_name(filename: str | None) -> str:
    """The batch name an uploaded zip's file name gives: its stem, without separators, at most 200 characters."""
    stem = Path(str(filename or "batch.zip").replace("\\", "/")).name
    stem = stem[:-4] if stem.lower().endswith(".zip") else stem
    stem = "".join(c for c in stem if c.isprintable() and c not in "/\\").strip(" .")[:200]
    return stem or "uploaded batch"


async def _values(request: Request) -> dict:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        return body if isinstance(body, dict) else {}
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


_READABLE_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


def _safe_extract(stream, folder: Path, limit: int = 500 * 1024 * 1024) -> None:
    """Unpack a zip without letting any member escape `folder` or the total exceed `limit` bytes;
    an encrypted member or one in a compression Python cannot read (Deflate64 = method 9, as
    Windows Explorer writes for large folders) is refused by name, before anything is unpacked."""
    folder.mkdir(parents=True)
    with zipfile.ZipFile(stream) as archive:
        total = 0
        for member in archive.infolist():
            target = (folder / member.filename).resolve()
            if not str(target).startswith(str(folder.resolve())):
                raise ValueError(f"member {member.filename!r} points outside the folder")
            if member.flag_bits & 0x1:
                raise ValueError(f"member {member.filename!r} is encrypted; zip the folder again without a password")
            if member.compress_type not in _READABLE_COMPRESSION:
                method = "Deflate64" if member.compress_type == 9 else f"method {member.compress_type}"
                raise ValueError(
                    f"member {member.filename!r} is compressed with {method}, which cannot be read here; "
                    "zip the folder again with ordinary (deflate) compression"
                )
            total += member.file_size
            if total > limit:
                raise ValueError("more than 500 MB unpacked")
        archive.extractall(folder)


def _result_pdf(session: Session, sample: Sample) -> bytes:
    """The sample's report printed to PDF with its sign-off block filled in: who reviewed, who signed
    off and when, every finding with the status it was signed off with, and the comments."""
    from plasmacount.report import SignOff, html_to_pdf, sign_off_page, with_sign_off

    signoff = SignOff(
        signed_off_by=sample.signed_off_by or "",
        signed_off_at=f"{sample.signed_off_at:%Y-%m-%d %H:%M} UTC",
        reviewers=tuple(records.reviewers_of(session, sample.id)),
        findings=tuple((f.label, f.automatic, f.status, f.detail) for f in sample.findings),
        comments=tuple((c.author, f"{c.at:%Y-%m-%d %H:%M}", c.text) for c in sample.comments),
    )
    page = (
        with_sign_off(sample.report_html, signoff)
        if sample.report_html
        else sign_off_page(sample.name, sample.batch.name, signoff)
    )
    return html_to_pdf(page, f"plasmacount report: {sample.name} (signed off)")
