"""The dashboard served by ``splitlab serve`` at ``/``: server-rendered pages over the operations.

``pages`` holds the routes (sign-in, the experiments list, an experiment's page, planning, actions),
``sessions`` the signed session and form tokens, ``views`` what each page shows (read from the
operations, arranged for the templates); ``templates/`` and ``static/`` ship inside the package, so
nothing is fetched from elsewhere.
"""

from splitlab.service.dashboard.pages import STATIC_DIR, router
from splitlab.service.dashboard.sessions import COOKIE, SessionSigner

__all__ = ["COOKIE", "STATIC_DIR", "SessionSigner", "router"]
