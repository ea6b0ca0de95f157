"""Reason and alert codes, exactly as RULES.md names them (integrators match on these strings)."""

DUPLICATE_EVENT = "duplicate_event"

NO_CARD = "no_card"
CARD_SUSPENDED = "card_suspended"
CERTIFICATE_EXPIRED = "certificate_expired"
RENEWAL_WAIT = "renewal_wait"

MYKEY_ALREADY_SET = "mykey_already_set"
BUDGET_EXHAUSTED = "budget_exhausted"

NO_MYKEY = "no_mykey"
OUTSIDE_WINDOW = "outside_window"
CARD_APPLIED_TOO_LATE = "card_applied_too_late"
PROXY_NOT_ALLOWED = "proxy_not_allowed"
UNKNOWN_SERVICE = "unknown_service"
SERVICE_NOT_SELECTABLE = "service_not_selectable"
PREREGISTRATION_MISSING = "preregistration_missing"
PHASE1_APPLIED = "phase1_applied"
NOT_REGISTERED = "not_registered"
ALREADY_LINKED = "already_linked"
SERVICE_CHANGE_NOT_ALLOWED = "service_change_not_allowed"
ACCOUNT_LINKED_ELSEWHERE = "account_linked_elsewhere"

NOT_LINKED_SERVICE = "not_linked_service"
DUPLICATE_TRANSACTION = "duplicate_transaction"
BEFORE_LINK = "before_link"
SAME_DAY_EXCLUDED = "same_day_excluded"
CAP_REACHED = "cap_reached"

UNKNOWN_TRANSACTION = "unknown_transaction"
REFUND_EXCEEDS_PAYMENT = "refund_exceeds_payment"

ALREADY_REGISTERED = "already_registered"

ALERT_ACCOUNT_SHARED = "account_shared"

ALL_REASONS = frozenset(
    v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str) and not k.startswith("ALERT")
)
