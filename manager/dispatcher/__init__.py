"""The dispatcher: agents' sessions, joins and heartbeats, and node liveness."""
