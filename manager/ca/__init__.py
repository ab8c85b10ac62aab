"""The cluster's root CA and join tokens."""

from manager.ca.tokens import ClusterCredentials, InvalidToken, JoinToken, make_token, parse_token

__all__ = ["ClusterCredentials", "InvalidToken", "JoinToken", "make_token", "parse_token"]
