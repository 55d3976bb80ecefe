"""What ``/assign`` and ingestion run on every request, without I/O while the caches are warm.

The lean route (:mod:`~splitlab.service.hot_path.lean_route`), the assigner over compiled
experiments (:mod:`~splitlab.service.hot_path.experiment_cache`, ``assigner``), sticky reads
(``sticky``), bandit weights, the SDK config document, and the group-commit writers of assignments
(``recorder``) and events (``event_writer``). docs/service.md ("How /assign stays fast") tells why.
"""
