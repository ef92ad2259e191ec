"""Process-wide interpreter settings the service relies on, and their guard.

The service's parsers of untrusted input are bounded on their own (the JSON
reader's depth limit, size caps on DER and PDF input), and the interpreter's
recursion limit is the last line behind them: at Python's default a runaway
recursion is a `RecursionError` the error middleware answers with a 400. A
library that raises the limit (py_ecc sets 100,000 at import) turns the same
input into a C stack overflow that kills the process. audit_chain imports
web3 without letting that happen; `pin_recursion_limit` runs after start-up
and puts the limit back if anything else changed it.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

log = logging.getLogger(__name__)

#: CPython's default: deep enough for every library we call, shallow enough
#: that the C stack (8 MiB on the main thread) never runs out first.
SERVICE_RECURSION_LIMIT: Final = 1000


def pin_recursion_limit() -> None:
    current = sys.getrecursionlimit()
    if current != SERVICE_RECURSION_LIMIT:
        log.warning(
            "recursion limit was changed to %d behind the service's back; restoring %d",
            current,
            SERVICE_RECURSION_LIMIT,
        )
        sys.setrecursionlimit(SERVICE_RECURSION_LIMIT)
