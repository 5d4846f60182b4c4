"""Exchange: signed feeds of shared banks, peers that follow them, import adapters, and
HMA-compatible routes.

Importing the package registers its matching and screening hooks and its pull job, so every
process that screens or runs jobs (API, CLI, workers) treats exchanged entries alike.
"""

from prescreen.exchange import provenance as _provenance  # noqa: F401  (registers hooks)
from prescreen.exchange import pull as _pull  # noqa: F401  (registers the pull job)
