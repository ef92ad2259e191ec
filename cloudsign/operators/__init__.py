"""Operators: the people who run the centre (registration, revocation,
audit, security), each signed in with their own password and TOTP; the
two-person rule for the actions that hurt most; every action an audit event.
Their API and console are served on the operator listener only."""

from cloudsign.operators.access import current_operator
from cloudsign.operators.api import approval_json, operator_json, pending_response
from cloudsign.operators.service import (
    Approval,
    ApprovalPendingError,
    Operator,
    OperatorService,
    Role,
    check_password,
)

__all__ = [
    "Approval",
    "ApprovalPendingError",
    "Operator",
    "OperatorService",
    "Role",
    "approval_json",
    "check_password",
    "current_operator",
    "operator_json",
    "pending_response",
]
