"""device_client: the reference device client in Python, doing what the
citizen's phone or browser does (Argon2id and the wrapped key password,
TOTP codes, face bursts, CSC authorisation for pyHanko) over real HTTP.
Tests and benchmarks drive the service through it. It is a client: it
imports nothing of the service, only the wire format (docs/wire-format.md)."""
