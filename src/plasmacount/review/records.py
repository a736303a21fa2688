"""What reviewers do to results, each change written to the audit trail in the same transaction.

- `import_batch`: a result folder (from `nipt`/`tumor`/`viral`/`fragments`, with or without
  `report`) becomes a batch of samples, each with its findings (every trisomy, each sex-chromosome
  aneuploidy, each CNV, the EBV screen, the tumour fraction) at an initial status taken from the
  automatic call. The same folder imported twice is recognised by its content and not duplicated.
- `set_finding_status`, `add_comment`, `sign_off`: optimistic locking by version numbers, so two
  reviewers never silently overwrite each other; a signed-off sample is locked.
- `create_user`, `set_role`: accounts, with argon2 password hashes.

Nothing is deleted: a status is superseded by the next, and the audit keeps every old value.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from plasmacount.errors import DataError, UsageError
from plasmacount.report import collect
from plasmacount.results import NO_CALL, POSITIVE, read_results
from plasmacount.review.database import (
    ROLES,
    STATUSES,
    AuditEntry,
    Batch,
    Comment,
    Finding,
    LoginSession,
    ReportFile,
    Sample,
    User,
    begin_write,
    now,
)

MAIN_TRISOMIES = ("T21", "T18", "T13")
SEX_CHROMOSOME_FINDINGS = ("45,X", "47,XXX", "47,XXY", "47,XYY")


class Conflict(Exception):
    """Someone else changed the record since the page was loaded."""


class Locked(Exception):
    """The sample is signed off; its results can no longer change."""


class Forbidden(Exception):
    """The user's role does not allow the change."""


@dataclass
class ImportResult:
    batch: Batch
    created: bool


REVIEW_ACTIONS = ("set status", "confirm status", "comment")


def reviewers_of(session: Session, sample_id: int) -> list[str]:
    """Who set or confirmed a status or commented on a sample, in the order they first did."""
    names = session.scalars(
        select(AuditEntry.username)
        .where(AuditEntry.sample_id == sample_id, AuditEntry.action.in_(REVIEW_ACTIONS))
        .order_by(AuditEntry.id)
    ).all()
    return list(dict.fromkeys(names))


def audit(
    session: Session,
    username: str,
    action: str,
    *,
    batch_id: int | None = None,
    sample_id: int | None = None,
    target: str = "",
    old: str | None = None,
    new: str | None = None,
    details: dict | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=now(),
            username=username,
            action=action,
            batch_id=batch_id,
            sample_id=sample_id,
            target=target,
            old_value=old,
            new_value=new,
            details=details,
        )
    )


def _findings_of(results: dict) -> list[dict]:
    """Every reviewable finding of one sample, with its automatic call and initial status."""
    findings = []
    nipt, tumor, viral = read_results(results)
    if nipt:
        calls = {c.event: c for c in nipt.calls}
        order = (
            list(MAIN_TRISOMIES)
            + [e for e in calls if e not in MAIN_TRISOMIES + SEX_CHROMOSOME_FINDINGS]
            + list(SEX_CHROMOSOME_FINDINGS)
        )
        for event in order:
            call = calls.get(event)
            if call is None:
                continue
            numbers = []
            if call.z is not None:
                numbers.append(f"z {call.z:.2f}")
            if call.log_bayes_factor is not None:
                numbers.append(f"log Bayes factor {call.log_bayes_factor:.1f}")
            if call.score is not None and event in SEX_CHROMOSOME_FINDINGS:
                numbers.append(f"posterior {call.score:.3f}")
            if call.reason:
                numbers.append(call.reason)
            if call.note:
                numbers.append(call.note)
            status = (
                "Failed"
                if nipt.failed or call.result == NO_CALL
                else "Suspected"
                if call.result == POSITIVE
                else "Normal"
            )
            findings.append(
                {
                    "key": event,
                    "label": f"Trisomy {event[1:]}" if event.startswith("T") else event,
                    "automatic": call.result,
                    "detail": "; ".join(numbers),
                    "status": status,
                }
            )
        for cnv in nipt.copy_number_calls:
            key = f"CNV {cnv.chrom}:{cnv.start}-{cnv.end}"
            label = f"{cnv.kind} {cnv.chrom}:{cnv.start:,}-{cnv.end:,} ({cnv.size / 1e6:.1f} Mb)"
            detail = f"{cnv.origin} origin; ratio {cnv.copy_ratio:.3f}; z {cnv.z:.1f}" + (
                f"; {cnv.syndrome}" if cnv.syndrome else ""
            )
            findings.append(
                {"key": key, "label": label, "automatic": "positive", "detail": detail, "status": "Suspected"}
            )
    if viral:
        screen = viral.screen_result
        findings.append(
            {
                "key": "EBV screen",
                "label": f"{viral.data['virus']} screen",
                "automatic": screen,
                "detail": f"{viral.data['fragments']['unique']} fragments; size ratio "
                f"{'not evaluable' if viral.size_ratio is None else format(viral.size_ratio, '.2f')}",
                "status": "Suspected" if viral.positive else "Failed" if screen == "not evaluable" else "Normal",
            }
        )
    if tumor:
        low, high = tumor.interval
        findings.append(
            {
                "key": "tumour fraction",
                "label": "Tumour fraction",
                "automatic": f"{100 * tumor.tumor_fraction:.1f} %" + (" (detected)" if tumor.detected else ""),
                "detail": f"95 % interval {100 * low:.1f}-{100 * high:.1f} %; ploidy {tumor.ploidy:.2f}",
                "status": "Suspected" if tumor.detected else "Normal",
            }
        )
    return findings


def import_batch(session: Session, folders: str | Path | list, username: str, name: str | None = None) -> ImportResult:
    """Load result folders (analyses, and reports if made) as one batch; the same content again
    returns the batch already there."""
    folders = [Path(f) for f in (folders if isinstance(folders, list) else [folders])]
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{folder}: not a folder of plasmacount results")
    folder = folders[0]
    samples = collect(folders)
    digest = hashlib.sha256()
    for entry in samples:
        for analysis in sorted(entry.results):
            digest.update(json.dumps(entry.results[analysis], sort_keys=True).encode())
    content_hash = digest.hexdigest()
    existing = session.scalar(select(Batch).where(Batch.content_hash == content_hash))
    if existing is not None:
        return ImportResult(existing, False)
    name = name or folder.resolve().name
    if session.scalar(select(Batch).where(Batch.name == name)) is not None:
        raise DataError(f"a different batch named {name!r} is already imported; import this one under another name")
    reports: dict[str, str] = {}
    data_files: dict[str, str] = {}
    for each in folders:
        pages, files = _find_reports(each)
        reports.update({key: page for key, page in pages.items() if key not in reports})
        data_files.update({key: text for key, text in files.items() if key not in data_files})
    batch = Batch(
        name=name,
        content_hash=content_hash,
        imported_at=now(),
        imported_by=username,
        overview_html=reports.get("batch"),
    )
    session.add(batch)
    session.flush()
    for path, text in sorted(data_files.items()):
        session.add(ReportFile(batch_id=batch.id, path=path, content=text))
    for entry in samples:
        sample = Sample(
            batch_id=batch.id,
            name=entry.sample,
            results=entry.results,
            report_html=reports.get(entry.sample),
            version=1,
        )
        session.add(sample)
        session.flush()
        for position, finding in enumerate(_findings_of(entry.results)):
            session.add(Finding(sample_id=sample.id, position=position, version=1, **finding))
    audit(
        session,
        username,
        "import batch",
        batch_id=batch.id,
        target=name,
        new=f"{len(samples)} samples",
        details={"folders": [str(f.resolve()) for f in folders], "content_hash": content_hash},
    )
    session.commit()
    return ImportResult(batch, True)


REPORT_DATA_LIMIT = 20 * 1024 * 1024  # bytes of plot data kept per batch; beyond it the links say the file was not kept


def _find_reports(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """HTML reports written by `plasmacount report` anywhere in the folder (sample -> page, 'batch'
    -> overview), and the plot data beside them (`<folder>_data/<file>.tsv` -> text)."""
    pages: dict[str, str] = {}
    for page in sorted(folder.rglob("*.html")):
        key = "batch" if page.name == "batch.html" else page.stem
        pages.setdefault(key, page.read_text(errors="replace"))
    files: dict[str, str] = {}
    total = 0
    for path in sorted(folder.rglob("*_data/*.tsv")):
        key = f"{path.parent.name}/{path.name}"
        if key in files or not path.is_file() or path.is_symlink() or len(key) > 300:
            continue
        total += path.stat().st_size
        if total > REPORT_DATA_LIMIT:
            break
        files[key] = path.read_text(errors="replace")
    return pages, files


def _require(user: User, *roles: str) -> None:
    if user.role not in roles:
        raise Forbidden(f"a {user.role} cannot make this change")


def set_finding_status(
    session: Session, user: User, finding_id: int, status: str, expected_version: int, comment: str | None = None
) -> Finding:
    """Change a finding's status if nobody has since the caller read `expected_version`."""
    _require(user, "reviewer", "admin")
    if status not in STATUSES:
        raise UsageError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if comment:
        _check_comment(comment)
    finding = session.get(Finding, finding_id)
    if finding is None:
        raise KeyError(finding_id)
    sample = _open_sample(session, user, finding.sample_id)
    session.refresh(finding)
    old = finding.status
    # Optimistic lock: the UPDATE only matches the version the reviewer saw.
    changed = cast(
        CursorResult,
        session.execute(
            update(Finding)
            .where(Finding.id == finding_id, Finding.version == expected_version)
            .values(status=status, version=Finding.version + 1, updated_by=user.username, updated_at=now())
        ),
    )
    if changed.rowcount != 1:
        session.rollback()
        current = session.get(Finding, finding_id)
        assert current is not None  # findings are never deleted
        session.refresh(current)
        raise Conflict(
            f"{current.label} of {sample.name} was changed by {current.updated_by} at "
            f"{current.updated_at:%Y-%m-%d %H:%M:%S} UTC (now {current.status}) after you opened the page; "
            "reload it, check their change, and set the status again if still needed"
        )
    session.execute(update(Sample).where(Sample.id == sample.id).values(version=Sample.version + 1))
    audit(
        session,
        user.username,
        "set status",
        batch_id=sample.batch_id,
        sample_id=sample.id,
        target=finding.label,
        old=old,
        new=status,
    )
    if comment and comment.strip():
        session.add(
            Comment(sample_id=sample.id, finding_id=finding.id, author=user.username, at=now(), text=comment.strip())
        )
        audit(
            session,
            user.username,
            "comment",
            batch_id=sample.batch_id,
            sample_id=sample.id,
            target=finding.label,
            new=comment.strip(),
        )
    session.commit()
    session.refresh(finding)
    return finding


def _open_sample(session: Session, user: User, sample_id: int) -> Sample:
    """The sample a reviewer is about to change, read afresh under a lock held until the change
    commits (BEGIN IMMEDIATE on SQLite, SELECT ... FOR UPDATE on PostgreSQL): it must exist and not
    be signed off, and no sign-off in another process can slip in between this check and the
    change."""
    _require(user, "reviewer", "admin")
    begin_write(session, f"sample:{sample_id}")
    sample = session.scalar(
        select(Sample).where(Sample.id == sample_id).with_for_update().execution_options(populate_existing=True)
    )
    if sample is None:
        raise KeyError(sample_id)
    if sample.locked:
        raise Locked(f"{sample.name} was signed off by {sample.signed_off_by}; it can no longer change")
    return sample


COMMENT_LIMIT = 10_000  # characters


def _check_comment(text: str) -> None:
    if len(text) > COMMENT_LIMIT:
        raise UsageError(f"a comment of {len(text):,} characters; at most {COMMENT_LIMIT:,}")


def add_comment(session: Session, user: User, sample_id: int, text: str) -> Comment:
    if not text.strip():
        raise UsageError("an empty comment")
    _check_comment(text)
    sample = _open_sample(session, user, sample_id)
    comment = Comment(sample_id=sample_id, author=user.username, at=now(), text=text.strip())
    session.add(comment)
    # A comment changes what a sign-off vouches for: a sign-off from a page opened before it is refused.
    session.execute(update(Sample).where(Sample.id == sample_id).values(version=Sample.version + 1))
    audit(
        session,
        user.username,
        "comment",
        batch_id=sample.batch_id,
        sample_id=sample_id,
        target=sample.name,
        new=text.strip(),
    )
    session.commit()
    return comment


def confirm_automatic(session: Session, user: User, sample_id: int, expected_version: int) -> int:
    """Confirm, in one step, the status of every finding nobody has reviewed yet (it keeps the status
    the analysis gave it), each confirmation in the audit trail; if the sample is as the reviewer
    last saw it. Returns how many were confirmed."""
    sample = _open_sample(session, user, sample_id)
    if sample.version != expected_version:
        session.rollback()
        raise Conflict(f"{sample.name} changed after you opened it; reload the page and check before confirming")
    pending = [finding for finding in sample.findings if finding.updated_by is None]
    for finding in pending:
        session.execute(
            update(Finding)
            .where(Finding.id == finding.id)
            .values(version=Finding.version + 1, updated_by=user.username, updated_at=now())
        )
        audit(
            session,
            user.username,
            "confirm status",
            batch_id=sample.batch_id,
            sample_id=sample.id,
            target=finding.label,
            old=finding.status,
            new=finding.status,
            details={"automatic": finding.automatic},
        )
    session.execute(update(Sample).where(Sample.id == sample.id).values(version=Sample.version + 1))
    session.commit()
    return len(pending)


def sign_off(session: Session, user: User, sample_id: int, expected_version: int, four_eyes: bool = False) -> Sample:
    """Sign the sample off and lock it, if it is as the reviewer last saw it. Under the four-eyes
    rule someone other than the signer must have reviewed it (set or confirmed a status, or
    commented)."""
    sample = _open_sample(session, user, sample_id)
    if four_eyes and not [name for name in reviewers_of(session, sample_id) if name != user.username]:
        session.rollback()
        raise Forbidden(
            f"four-eyes rule: {sample.name} has no review by anyone but {user.username}; "
            "another reviewer must review it before you sign it off"
        )
    changed = cast(
        CursorResult,
        session.execute(
            update(Sample)
            .where(Sample.id == sample_id, Sample.version == expected_version, Sample.signed_off_at.is_(None))
            .values(signed_off_by=user.username, signed_off_at=now(), version=Sample.version + 1)
        ),
    )
    if changed.rowcount != 1:
        session.rollback()
        raise Conflict(f"{sample.name} changed after you opened it; reload the page and check before signing off")
    audit(
        session,
        user.username,
        "sign off",
        batch_id=sample.batch_id,
        sample_id=sample_id,
        target=sample.name,
        old="open",
        new="signed off",
        details={finding.label: finding.status for finding in sample.findings},
    )
    session.commit()
    session.refresh(sample)
    return sample


def create_user(session: Session, username: str, password: str, role: str, created_by: str) -> User:
    from plasmacount.review.security import hash_password

    if role not in ROLES:
        raise UsageError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not username or len(username) > 64 or not username.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise UsageError("a user name is 1-64 letters, digits, '.', '_' or '-'")
    _check_password(password)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise UsageError(f"user {username!r} exists already")
    user = User(username=username, password_hash=hash_password(password), role=role, active=True, created_at=now())
    session.add(user)
    audit(session, created_by, "create user", target=username, new=role)
    session.commit()
    return user


def _check_password(password: str) -> None:
    if len(password) < 10:
        raise UsageError("a password needs at least 10 characters")


def _account_manager(actor: User | None) -> str:
    """Who changes an account, as the audit trail names them: an admin, or (None) the command line."""
    if actor is None:
        return "command line"
    _require(actor, "admin")
    return actor.username


def _keep_an_admin(session: Session, user: User, role: str, active: bool) -> None:
    """Refuse a change that would leave no active admin (nobody could manage accounts any more)."""
    if user.role == "admin" and user.active and (role != "admin" or not active):
        others = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.active.is_(True), User.id != user.id)
        )
        if not others:
            raise UsageError(f"{user.username} is the last active admin; make another admin first")


def _user_for_change(session: Session, user_id: int) -> User:
    begin_write(session, "users")
    user = session.scalar(
        select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
    )
    if user is None:
        raise KeyError(user_id)
    return user


def revoke_sessions(session: Session, user: User) -> int:
    """End every live login session of `user` (the caller commits); returns how many."""
    ended = cast(
        CursorResult,
        session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user.id, LoginSession.expires_at > now())
            .values(expires_at=now())
        ),
    )
    return int(ended.rowcount or 0)


def set_role(session: Session, admin: User, user_id: int, role: str) -> User:
    _require(admin, "admin")
    if role not in ROLES:
        raise UsageError(f"role {role!r} is not one of {', '.join(ROLES)}")
    user = _user_for_change(session, user_id)
    _keep_an_admin(session, user, role, user.active)
    old = user.role
    user.role = role
    audit(session, admin.username, "set role", target=user.username, old=old, new=role)
    session.commit()
    return user


def set_active(session: Session, admin: User | None, user_id: int, active: bool) -> User:
    """Disable (every session ended at once) or re-enable an account; `admin` None: the command line."""
    by = _account_manager(admin)
    user = _user_for_change(session, user_id)
    _keep_an_admin(session, user, user.role, active)
    old = user.active
    user.active = active
    ended = 0 if active else revoke_sessions(session, user)
    audit(
        session,
        by,
        "enable user" if active else "disable user",
        target=user.username,
        old="active" if old else "disabled",
        new="active" if active else "disabled",
        details={"sessions_ended": ended},
    )
    session.commit()
    return user


def set_password(session: Session, actor: User | None, user_id: int, password: str) -> User:
    """A new password (an admin's reset or the command line); every session of the user ends."""
    from plasmacount.review.security import hash_password

    by = _account_manager(actor)
    _check_password(password)
    user = _user_for_change(session, user_id)
    user.password_hash = hash_password(password)
    ended = revoke_sessions(session, user)
    audit(session, by, "set password", target=user.username, details={"sessions_ended": ended})
    session.commit()
    return user


def end_sessions(session: Session, actor: User | None, user_id: int) -> int:
    """Log a user out everywhere (a lost laptop); returns how many sessions ended."""
    by = _account_manager(actor)
    user = _user_for_change(session, user_id)
    ended = revoke_sessions(session, user)
    audit(session, by, "end sessions", target=user.username, details={"sessions_ended": ended})
    session.commit()
    return ended
