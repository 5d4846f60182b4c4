"""Legal requests: validation, two-person approval, scoped signed productions, preservation
holds, emergency disclosure, user notice and removal orders, every step in the audit log."""
