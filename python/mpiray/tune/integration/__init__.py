"""Integrations of Tune with other libraries (Ray's ``ray.tune.integration``)."""
