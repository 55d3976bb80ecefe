"""The use cases of splitlab: the one place where a rule about experiments is enforced.

Every front end (the Python API, the CLI, the HTTP service, and next the monitor, the model
router and the dashboard) calls these functions and turns their errors into its own answer, so
the same input gets the same outcome, error text included, whichever way it comes in.
"""
