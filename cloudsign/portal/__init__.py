"""The citizen's web portal: enrolment, signing, the personal cabinet, the
auditor's page and login, served as plain HTML/CSS/ES modules by the same
app (`api.py`: the page, its static files, the cookie-session endpoints;
the cookie and its CSRF check are `cloudsign.web.auth`)."""
