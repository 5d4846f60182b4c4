"""Human review: the queue, decisions that feed the banks, appeals, strikes and the web UI.

Importing the package registers its screening hooks (a held upload opens a case; a repeat
offender's uploads are held), so every process that screens (API, CLI, workers) reviews alike.
"""

from prescreen.review import service as _service  # noqa: F401  (registers screening hooks)
