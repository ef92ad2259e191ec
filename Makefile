# cloudsign: `make run` serves on the embedded defaults, `make test` runs the
# whole suite. Both install whatever is missing first (scripts/setup.sh).
.PHONY: setup run test lint pytest bench

setup:
	@scripts/setup.sh

# The embedded defaults (anvil, SoftHSM2, a generated PIN, http) are a
# development instance: `cloudsign serve` refuses them unless told so.
run: setup
	CLOUDSIGN_DEVELOPMENT=true .venv/bin/cloudsign serve

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

pytest: setup
	.venv/bin/pytest -n 2 --dist loadgroup

test: setup lint pytest

bench: setup
	.venv/bin/python bench/bench_hsm.py
	.venv/bin/python bench/bench_signing.py
	.venv/bin/python bench/bench_biometrics.py
	.venv/bin/python bench/bench_face_service.py
	.venv/bin/python bench/bench_audit_chain.py
	.venv/bin/python bench/bench_audit_service.py
	.venv/bin/python bench/bench_status.py
	.venv/bin/python bench/bench_scale.py
	.venv/bin/python bench/bench_recovery.py
	.venv/bin/python bench/bench_citizens.py
	.venv/bin/python bench/bench_body.py
	.venv/bin/python bench/bench_signing_requests.py
