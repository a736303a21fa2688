"""The review web app: people check, annotate and sign off results before they reach a doctor.

`database` holds the tables and the migrations that make them; `records` the operations on them
(importing a batch, setting a finding's status, comments, sign-off, users), each of which writes
the audit trail; `security` passwords, sessions, CSRF tokens and login rate limits; `app` the
FastAPI routes and server-rendered pages.
"""
