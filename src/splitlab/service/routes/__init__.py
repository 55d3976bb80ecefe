"""One router per resource, mounted under ``/api/v1`` by :func:`splitlab.service.create_app`."""
