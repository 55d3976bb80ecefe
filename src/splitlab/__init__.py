"""splitlab: an experimentation platform."""
