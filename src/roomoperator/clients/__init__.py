"""Clients of the services the operator talks to: the room server's REST API and its event stream."""
