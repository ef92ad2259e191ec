"""``python -m audit_chain``: the auditor CLI (see :mod:`audit_chain.cli`)."""

import sys

from audit_chain.cli import main

sys.exit(main())
