"""The composition root: the one place where the gateway's parts are built and wired.

``gateway.py`` holds ``Gateway`` (start in order, stop in reverse, every loop supervised);
``serve.py`` runs one process around it; ``api_wiring.py`` and ``email_wiring.py`` build the
HTTP API's and the email edge's parts for it; ``config_check.py`` checks every table before
anything starts; ``keys_cli.py`` is the ``gateway keys`` command. docs/DESIGN.md,
"Architecture", draws the layers.
"""

from gateway.app.gateway import Gateway
from gateway.app.serve import EXIT_TASK_FAILED, serve, tune_runtime

__all__ = ["EXIT_TASK_FAILED", "Gateway", "serve", "tune_runtime"]
