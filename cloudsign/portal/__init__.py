"""The citizen's web portal: enrolment, signing, the personal cabinet, the
auditor's page and login, served as plain HTML/CSS/ES modules by the same
app (`routes.py`), with a cookie session and CSRF token (`session.py`).

Kept import-light: `cloudsign.api_enrolment` imports `session` from here."""
