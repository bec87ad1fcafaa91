"""The gateway role (see `pvoq.gateway.role`)."""

from pvoq.gateway.role import Gateway

__all__ = ["Gateway"]
